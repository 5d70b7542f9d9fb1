"""The gallery index: SegGal order, sorting by accuracy / speed / overall, the page's groups."""

from __future__ import annotations

import math
import re

import pytest

from cellbench.gallery.index import ordered, with_overall
from cellbench.gallery.render import index_html


def _entry(name, modality, target, channels, dataset, method, accuracy, ts):
    acc = None if accuracy is None else {
        "metric": "F1@0.5", "value": accuracy, "aggregation": "pooled", "dataset": dataset, "split": "test",
        "task": "all", "n_images": 4, "ground_truth": "overlap", "boundary_px": 2, "setting": "split test"}
    return {"name": name, "modality": modality, "target": target, "channels": channels, "dataset": dataset,
            "task": "all", "method": method, "method_version": "1", "accuracy": acc, "ts_s": ts,
            "train_split": "train", "train_images": 3, "train_cells": 30, "licence": None,
            "archive": {"path": f"models/{name}/x/model.tar.gz", "sha256": "a" * 64, "size": 10},
            "card": {"html": f"models/{name}/x/card.html"}}


ENTRIES = [
    _entry("wc-cp", "fluorescence", "whole-cell", "dual", "tissuenet", "cellpose", 0.80, 100.0),
    _entry("nuc-ws", "fluorescence", "nuclei", "nuclear", "tissuenet", "watershed", 0.60, 1.0),
    _entry("nuc-cp", "fluorescence", "nuclei", "nuclear", "tissuenet", "cellpose", 0.90, 300.0),
    _entry("nuc-sam", "fluorescence", "nuclei", "nuclear", "dsb", "cellseg1", None, 50.0),
    _entry("pc-cp", "phase-contrast", "whole-cell", "grayscale", "livecell", "cellpose", 0.70, 20.0),
]


def test_seggal_order_is_modality_target_channels_training_data_method():
    assert [e["name"] for e in ordered(ENTRIES)] == ["nuc-sam", "nuc-cp", "nuc-ws", "wc-cp", "pc-cp"]


def test_sort_keys():
    scored = with_overall(ENTRIES)
    assert [e["name"] for e in ordered(scored, "accuracy")] == ["nuc-cp", "wc-cp", "pc-cp", "nuc-ws", "nuc-sam"]
    assert [e["name"] for e in ordered(scored, "speed")] == ["nuc-ws", "pc-cp", "nuc-sam", "wc-cp", "nuc-cp"]
    assert [e["name"] for e in ordered(scored, "name")] == sorted(e["name"] for e in ENTRIES)
    by_overall = [e["name"] for e in ordered(scored, "overall")]
    assert by_overall[-1] == "nuc-sam"  # no accuracy: no overall, last
    with pytest.raises(ValueError, match="unknown sort key"):
        ordered(ENTRIES, "size")


def test_overall_is_accuracy_and_scalability_within_the_group():
    scored = {e["name"]: e for e in with_overall(ENTRIES)}
    times = [1.0, 300.0, 50.0]  # the nuclei group: nuc-ws, nuc-cp, nuc-sam
    mean = sum(times) / 3
    std = math.sqrt(sum((t - mean) ** 2 for t in times) / 2)
    phi = 0.5 * (1 + math.erf((300.0 - mean) / std / math.sqrt(2)))
    assert scored["nuc-cp"]["scalability"] == pytest.approx(1 - phi)
    assert scored["nuc-cp"]["overall"] == pytest.approx((0.90 + 1 - phi) / 2)
    assert scored["nuc-sam"]["overall"] is None and scored["nuc-sam"]["scalability"] is not None
    assert scored["pc-cp"]["scalability"] == 0.5  # alone in its group


def test_index_page_groups_rows_and_names_the_data_beside_every_score():
    page = index_html(with_overall(ENTRIES))
    groups = re.findall(r"<tbody class='group'><tr class='group'><th[^>]*>(.*?)</th>", page)
    assert groups == ["fluorescence / nuclei / channels: nuclear", "fluorescence / whole-cell / channels: dual",
                      "phase-contrast / whole-cell / channels: grayscale"]
    rows = re.findall(r"<tr class='model'(.*?)</tr>", page)
    assert len(rows) == len(ENTRIES)
    for row in rows:
        if "data-accuracy=''" not in row:
            assert re.search(r"0\.\d{3} on \w+ / test \(all, 4 images, overlap ground truth, boundary 2 px", row)
    assert "function sortRows" in page and "sortRows('speed')" in page and "src=" not in page
