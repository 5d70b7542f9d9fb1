"""Certainty report tables on hand-made evaluation records, against the analysis functions."""

from __future__ import annotations

import pytest

from cellbench.analysis import bootstrap_interval, image_counts, paired_comparison
from cellbench.report.certainty_tables import interval_table, pairwise_tables
from cellbench.report.results import EntryEvaluation
from cellbench.runner import EntryRecord, EvaluationRecord

COUNTS = {
    "cellpose": [(8, 2, 1), (5, 0, 4), (9, 1, 1), (4, 4, 4), (6, 0, 1)],
    "stardist": [(7, 3, 2), (5, 1, 4), (6, 2, 4), (2, 5, 6), (6, 1, 1)],
}


def _ev(method, split="test", names=None):
    names = names or [f"img{k}" for k in range(5)]
    per_image = [{"image": n, "by_iou": {"0.5": {"tp": tp, "fp": fp, "fn": fn}}}
                 for n, (tp, fp, fn) in zip(names, COUNTS[method])]
    entry = EntryRecord(key=method, label=f"dsb/nuclei/{method}/pretrained/seed0", dataset="dsb", task="nuclei",
                        method=method, method_impl=method, regime="pretrained", train_images=0, seed=0,
                        status="done", error=None, config={})
    return EntryEvaluation(entry, EvaluationRecord(split=split, ground_truth="overlap", flatten_policy=None,
                                                   boundary_px=0, thresholds=(0.5,), n_images=5,
                                                   predict_wall_s=1.0, result={"per_image": per_image}))


def test_interval_table_matches_bootstrap_interval():
    t = interval_table([_ev("cellpose"), _ev("stardist")], n_boot=200, seed=2)
    assert t.columns[5:] == ("F1@50", "F1 low", "F1 high", "AP@50", "AP low", "AP high", "Images")
    counts = image_counts(_ev("cellpose").evaluation.result["per_image"], 0.5)
    f1 = bootstrap_interval(counts, "f1", n_boot=200, seed=2)
    ap = bootstrap_interval(counts, "ap_dsb", n_boot=200, seed=2)
    assert t.rows[0] == ("dsb", "nuclei", "test", "overlap", "cellpose (pretrained)", f1.estimate, f1.low, f1.high,
                         ap.estimate, ap.low, ap.high, 5)
    assert "200 resamples" in t.caption and "seed 2" in t.caption and "95 % interval" in t.caption


def test_pairwise_table_compares_every_two_methods_of_a_context():
    evs = [_ev("cellpose"), _ev("stardist"), _ev("cellpose", split="valid")]
    tables = pairwise_tables(evs, n_boot=100)
    assert len(tables) == 1  # the valid split has one method only
    rows = tables[0].rows
    assert [r[:3] for r in rows] == [("cellpose (pretrained)", "stardist (pretrained)", "f1"),
                                     ("cellpose (pretrained)", "stardist (pretrained)", "ap_dsb")]
    ref = paired_comparison(evs[0].evaluation.result["per_image"], evs[1].evaluation.result["per_image"], "f1", 0.5,
                            n_boot=100)
    assert rows[0][3:11] == pytest.approx((ref.estimate_a, ref.estimate_b, ref.difference, ref.low, ref.high,
                                           ref.p_bootstrap, ref.p_wilcoxon, 5))
    assert "paired" in tables[0].caption and "100 resamples" in tables[0].caption
    assert "split test" in tables[0].caption
    assert rows[0][11] == "only 5 images: the bootstrap understates the uncertainty"


def test_pairwise_table_notes_different_image_sets():
    evs = [_ev("cellpose"), _ev("stardist", names=["img0", "img1", "img2", "img3", "other"])]
    row = pairwise_tables(evs, n_boot=20)[0].rows[0]
    assert row[3:11] == (None,) * 8 and "not scored on the same images" in row[11]
    bare = EntryEvaluation(evs[0].entry, EvaluationRecord(split="test", ground_truth="overlap", flatten_policy=None,
                                                          boundary_px=0, thresholds=(0.5,), n_images=0,
                                                          predict_wall_s=None, result={}))
    assert interval_table([bare]) is None and pairwise_tables([bare, evs[1]]) == []
