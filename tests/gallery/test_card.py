"""Model cards: fields from the model directory and the run; no score without its data and settings."""

from __future__ import annotations

import copy
import json
import re
import shutil

import pytest

from cellbench import __version__
from cellbench.errors import DataError
from cellbench.gallery.card import check_card, model_card, standardised_time
from cellbench.gallery.render import card_html, card_markdown


def test_standardised_time_follows_the_18_methods_paper():
    # epochs: Ts = T * (B / 8) * (50 / E); B counts gradient accumulation
    assert standardised_time(80.0, {"n_epochs": 100, "batch_size": 8}, 5)["ts_s"] == pytest.approx(40.0)
    cellseg1 = {"train": {"epochs": 300, "batch_size": 4, "grad_accum": 8}}
    t = standardised_time(600.0, cellseg1, 1)
    assert (t["batch_size"], t["epochs"], t["basis"]) == (32, 300, "epochs")
    assert t["ts_s"] == pytest.approx(600.0 * 4 * 50 / 300)
    # iterations: Ts = T * (B / 8) * (50 N / (I B))
    t = standardised_time(90.0, {"max_iter": 500, "batch_size": 2}, 40)
    assert t["basis"] == "iterations" and t["ts_s"] == pytest.approx(90.0 * (2 / 8) * (50 * 40 / (500 * 2)))
    assert standardised_time(None, {"n_epochs": 1, "batch_size": 1}, 1)["ts_s"] is None


def test_card_from_a_run(scored):
    run, model = scored
    card = model_card(model, name="ws", run=run, licence="CC-BY-4.0", citation="doi:10/x", modality="fluorescence",
                      target="nuclei", channels="grayscale")
    assert card["method"]["name"] == "watershed" and card["method"]["version"] == "1"
    assert card["cellbench_version"] == {"trained_with": __version__, "published_with": __version__}
    assert card["config"]["sigmas"] == [0.0, 1.0] and card["tiling"] == {"tile": 0, "overlap": 0}
    data = card["training_data"]
    assert (data["dataset"], data["layout"], data["split"], data["task"]) == ("tiny", "dsb", "train", "all")
    assert (data["images"], data["cells"], data["image_sizes"]) == (3, 12, [[64, 64]])
    assert (data["modality"], data["target"], data["channels"]) == ("fluorescence", "nuclei", "grayscale")
    training = card["training"]
    assert training["t_s"] > 0 and training["ts_s"] == training["t_s"] and training["basis"] == "none"
    assert training["machine"]["cpu_count"] >= 1
    assert [(s["split"], s["ground_truth"], s["held_out"]) for s in card["scores"]] == \
        [("test", "overlap", True), ("test", "flattened", True)]
    score = card["scores"][0]
    assert score["thresholds"] == [0.5, 0.75, 0.9] and score["n_images"] == 2 and score["boundary_px"] == 0
    assert set(score["pooled"]) >= {"F1@0.5", "ap_dsb@0.5", "ap_dsb@0.75", "ap_dsb@0.9"}
    assert 0.0 <= score["pooled"]["F1@0.5"] <= 1.0
    assert score["coco"] is None and "scores" in score["coco_note"]  # watershed gives no instance scores
    assert score["source"]["entry"] == "tiny/all/ws/all/seed0"
    assert card["licence"] == "CC-BY-4.0" and card["citation"] == "doi:10/x"
    json.dumps(card)


def test_a_score_is_never_shown_without_its_data_and_settings(scored):
    run, model = scored
    card = model_card(model, name="ws", run=run)
    card["archive"] = {"file": "model.tar.gz", "sha256": "0" * 64, "size": 1}
    number = re.compile(r"\b[01]\.\d{3}\b")
    md = card_markdown(card)
    rows = [line for line in md.splitlines() if line.startswith("|") and number.search(line)]
    assert len(rows) == 2 * len(card["scores"])
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:3] == ["tiny", "test", "all"] and cells[4] in ("overlapping", "flattened (priority-last)")
        assert cells[5] == "off" and cells[6] == "2" and "over images" in cells[7]
    assert "IoU thresholds scored: 0.5, 0.75, 0.9" in md and "Hungarian" in md
    html = card_html(card)
    for row in re.findall(r"<tr>(.*?)</tr>", html):
        if number.search(row):
            assert "<td>tiny</td><td>test</td><td>all</td>" in row
    # a score that lost its settings is refused, by the card check and so by publish and the renderers' callers
    for key in ("dataset", "split", "thresholds", "n_images", "ground_truth"):
        broken = copy.deepcopy(card)
        broken["scores"][0][key] = None
        with pytest.raises(DataError, match="without the data and settings"):
            check_card(broken)


def test_card_without_a_run_says_it_has_no_scores(scored):
    _, model = scored
    card = model_card(model, name="ws")
    card["archive"] = {}
    assert card["scores"] == [] and card["training"]["machine"] is None and card["training"]["t_s"] > 0
    assert "No held-out scores" in card_markdown(card)


def test_a_model_the_run_did_not_train_is_refused(scored, tmp_path):
    run, model = scored
    copy_dir = tmp_path / "copy"
    shutil.copytree(model, copy_dir)
    assert model_card(copy_dir, name="ws", run=run)["scores"]  # a copy is recognised by its weights
    record = json.loads((copy_dir / "model.json").read_text())
    record["extra"] = {}
    record["weights"] = {k: "0" * 64 for k in record["weights"]}  # other weights, no runner record
    from cellbench.gallery.card import held_out_scores

    with pytest.raises(DataError, match="not trained by this run"):
        held_out_scores(run, record)
    with pytest.raises(DataError, match="no results database"):
        model_card(model, name="ws", run=tmp_path)
