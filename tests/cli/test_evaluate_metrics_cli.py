"""``cellbench evaluate --metrics``: the registered families by name, in the JSON, the CSV and the printed table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from cellbench.cli.main import main
from cellbench.metrics import evaluate

from ..metrics.helpers import dsb_pair


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("evm")
    gts, preds = [], []
    for seed, name in enumerate(["a", "b"]):
        gt, pred = dsb_pair(seed)
        (root / "gt").mkdir(exist_ok=True)
        (root / "pred").mkdir(exist_ok=True)
        tifffile.imwrite(root / "gt" / f"{name}.tif", gt.astype(np.uint16))
        tifffile.imwrite(root / "pred" / f"{name}.tif", pred.astype(np.int32))
        gts.append(gt)
        preds.append(pred)
    return root, gts, preds


def test_metrics_by_name(folders, tmp_path, capsys):
    root, gts, preds = folders
    out = tmp_path / "r.json"
    rc = main(["evaluate", "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--iou", "0.5",
               "--metrics", "aji,aji_plus,pq_canonical", "--json", str(out), "--csv", str(tmp_path / "r.csv")])
    assert rc == 0
    d = json.loads(out.read_text())
    ref = evaluate(gts, preds, names=["a", "b"], thresholds=[0.5],
                   metrics=["aji", "aji_plus", "pq_canonical"]).to_dict()
    assert d["pooled"] == ref["pooled"] and d["image_mean"] == ref["image_mean"]
    assert list(d["settings"]["metrics"]) == ["matching", "aji", "aji_plus", "pq_canonical"]
    assert "dice" not in d["per_image"][0] and d["per_image"][0]["aji"] == ref["per_image"][0]["aji"]
    row = next(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    assert {"aji", "aji_plus", "pq_canonical", "f1@0.5"} <= set(row)
    printed = capsys.readouterr().out
    assert "aji_plus pooled" in printed and "HoVer-Net get_fast_pq" in printed


def test_unknown_metric_is_refused_with_the_names(folders, capsys):
    root, _, _ = folders
    with pytest.raises(SystemExit):
        main(["evaluate", "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--metrics", "aji,ajj"])
    assert "unknown metric 'ajj'; metrics: matching, dice, aji, aji_plus" in capsys.readouterr().err
