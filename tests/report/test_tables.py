"""Report tables against hand-computed values, on hand-made evaluation records."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from cellbench.metrics import evaluate
from cellbench.report.results import EntryEvaluation
from cellbench.report.tables import (
    coco_table,
    count_bin_tables,
    failure_table,
    glioma_tables,
    standardised_time,
    summary_tables,
    threshold_tables,
    timing_table,
    top_bottom_tables,
    training_table,
)
from cellbench.runner import EntryRecord, EvaluationRecord, TrainingRecord


def _entry(method="cellpose", regime="fine-tuned", train_images=None, status="done", history=None, **kw):
    """A grid entry of the "cells" task (biological cells) of a Glioma C6 dataset; it trained when given a history."""
    training = None if history is None else TrainingRecord(
        wall_s=kw.get("wall"), n_images=3, images=("a", "b", "c"), history=history, resumed_from_cache=False)
    config = {"dataset": {"name": "glioma", "layout": "glioma-c6"}, **kw.get("config", {"method": {"config": {}}})}
    return EntryRecord(key=f"{method}-{regime}", label=f"glioma/cells/{method}/{regime}/seed0", dataset="glioma",
                       task="cells", method=method, method_impl=method, regime=regime, train_images=train_images,
                       seed=0, status=status, error=kw.get("error"), config=config, training=training)


# per-image F1 at 0.5 with GT counts: (name, n_gt, f1, dice)
IMAGES = [("a", 6, 0.2, 0.5), ("b", 10, 0.9, 0.8), ("c", 11, 0.5, 0.7), ("d", 100, 0.7, 0.6),
          ("e", 101, 0.1, 0.3), ("f", 5, 0.3, 0.4), ("g", 50, 0.6, 0.9), ("h", 0, None, 1.0)]


def _result():
    pooled = {
        # TP 80, FP 10, FN 20: P 80/90, R 80/100, F1 160/190, AP 80/110
        "0.5": {"tp": 80, "fp": 10, "fn": 20, "precision": 80 / 90, "recall": 0.8, "f1": 160 / 190,
                "ap_dsb": 80 / 110},
        "0.75": {"ap_dsb": 0.25},
        "0.9": {"ap_dsb": 0.01},
    }
    image_mean = {
        "0.5": {"f1": 0.4125, "f1_median": 0.4, "f1_std": 0.25, "dice": 0.65, "precision": 0.5, "recall": 0.45,
                "n_images": 8},
        "0.7": {"f1": 0.3, "dice": 0.65, "precision": 0.35, "recall": 0.3, "n_images": 8},
        "0.9": {"f1": 0.05, "dice": 0.65, "precision": 0.06, "recall": 0.04, "n_images": 8},
    }
    per_image = [{"image": n, "n_gt": g, "n_pred": 1, "dice": d, "by_iou": {"0.5": {"f1": f}}}
                 for n, g, f, d in IMAGES]
    return {"iou_thresholds": [0.5, 0.7, 0.75, 0.9], "pooled": pooled, "image_mean": image_mean,
            "per_image": per_image, "coco": {"map": 0.31, "ap50": 0.62, "ap75": 0.28, "ar50": 0.7, "ar75": 0.33,
                                             "max_dets": 3000}}


def _ev(entry, ground_truth="overlap", split="test", boundary_px=2, result=None):
    return EntryEvaluation(entry, EvaluationRecord(
        split=split, ground_truth=ground_truth, flatten_policy=None if ground_truth == "overlap" else "priority-last",
        boundary_px=boundary_px, thresholds=(0.5, 0.7, 0.75, 0.9), n_images=8, predict_wall_s=4.0,
        result=_result() if result is None else result))


def test_glioma_table_is_percent_pooled_with_the_paper_columns():
    zero = _entry("cyto3", "zero-shot", train_images=0)
    ft = _entry()
    tables = glioma_tables([_ev(zero), _ev(ft), _ev(ft, "flattened"), _ev(ft, split="gen")])
    t2, t4 = tables
    assert t2.columns[4:] == ("Glioma-ft", "Prec.", "Rec.", "F1", "AP@50", "AP@75", "AP@90")
    assert [r[2] for r in t2.rows] == ["gen", "spec", "spec"]  # grouped by subset; spec test is "spec"
    row = t2.rows[2]
    assert row[3:5] == ("cellpose (fine-tuned)", "yes")
    assert row[5:] == pytest.approx((8000 / 90, 80.0, 16000 / 190, 8000 / 110, 25.0, 1.0))
    assert t2.formatted()[2][5:] == ["88.89", "80.00", "84.21", "72.73", "25.00", "1.00"]
    assert t2.rows[1][4] == "no"
    assert "pooled over images" in t2.caption and "2 px frame" in t2.caption and "not COCO AP" in t2.caption
    assert "Table 4" in t4.title and "priority-last" in t4.caption and len(t4.rows) == 1


def test_summary_and_threshold_tables_carry_their_setting():
    ev = _ev(_entry())
    (s,) = summary_tables([ev])
    assert s.rows == (("cellpose (fine-tuned)", 0.4125, 0.4, 0.25, 0.65, 0.5, 0.45, 8),)
    assert "split test" in s.caption and "overlapping ground truth" in s.caption and "mean / median / sample std" in s.caption
    (t,) = threshold_tables([ev])
    assert [r[1:3] for r in t.rows] == [(0.5, 0.4125), (0.7, 0.3), (0.9, 0.05)]
    assert t.columns[-1] == "Total Samples" and t.rows[0][-1] == 8


def test_top_and_bottom_images():
    (t,) = top_bottom_tables([_ev(_entry())], n=5)
    top = [(r[3], r[4], r[5]) for r in t.rows if r[1] == "top"]
    bottom = [(r[3], r[4]) for r in t.rows if r[1] == "bottom"]
    assert top == [("b", 0.9, 0.8), ("d", 0.7, 0.6), ("g", 0.6, 0.9), ("c", 0.5, 0.7), ("f", 0.3, 0.4)]
    assert bottom == [("e", 0.1), ("a", 0.2), ("f", 0.3), ("c", 0.5), ("g", 0.6)]  # h (F1 undefined) left out


def test_count_bins():
    (t,) = count_bin_tables([_ev(_entry())])
    got = {r[1]: (r[2], r[3]) for r in t.rows}
    assert got["6-10"] == (pytest.approx((0.2 + 0.9) / 2), 2)
    assert got["11-20"] == (0.5, 1)
    assert got["21-50"] == (0.6, 1)
    assert got["51-100"] == (0.7, 1)  # 100 cells is 51-100, 101 is 100+
    assert got["100+"] == (0.1, 1)
    assert "1 image(s) with fewer than 6 cells" in t.caption  # f: 5 cells (h has no F1)


def test_training_table_and_standardised_time():
    history = {"epochs": [{"epoch": 0, "loss": 0.9, "val_score": 0.5}, {"epoch": 1, "loss": 0.4, "val_score": 0.7},
                          {"epoch": 2, "loss": 0.3, "val_score": 0.6}],
               "val_metric": "dice", "best_epoch": 1, "info": {"optimizer": "AdamW", "lr": 6e-4}}
    config = {"method": {"config": {}, "resolved_config": {"batch_size": 16, "patch_size": 256}}}
    t = training_table([_entry(history=history, config=config, wall=300.0), _entry("ws", "zero-shot", 0)])
    assert len(t.rows) == 1
    row = dict(zip(t.columns, t.rows[0]))
    assert (row["Batch Size"], row["Learning Rate"], row["Input Size"], row["Optimizer"]) == (16, 6e-4, "256x256", "AdamW")
    assert (row["Total Epochs"], row["Final Loss"], row["Best Val Score"]) == (3, 0.3, "0.7000 (dice)")
    assert row["Standardised time Ts (s)"] == pytest.approx(300 * (16 / 8) * (50 / 3))
    assert standardised_time(10.0, None, 5) is None


def test_coco_and_failures():
    t = coco_table([_ev(_entry())])
    assert t.rows[0][5:] == (0.31, 0.62, 0.28, 0.7, 0.33, 3000, "")
    assert "fractions, not %" in t.caption
    f = failure_table([_entry(status="failed", error="RuntimeError: boom\nTraceback ...")])
    assert f.rows == (("glioma/cells/cellpose/fine-tuned/seed0", "RuntimeError: boom"),)
    # grid entries are "grid entries"; "cell" is kept for biological cells
    assert (f.title, f.columns[0]) == ("Failed grid entries", "Grid entry")
    assert "entries.error" in f.caption and "cell" not in f.caption.lower()
    assert failure_table([_entry()]) is None


def test_timing_table_takes_the_train_time_from_the_entry_training():
    trained, zero = _entry(history={"epochs": []}, wall=12.0), _entry("ws", "zero-shot", 0)
    t = timing_table([_ev(trained), _ev(trained, "flattened"), _ev(zero)])
    assert [r[:6] for r in t.rows] == [("cellpose (fine-tuned)", "glioma", "cells", "test", 12.0, 8),
                                       ("ws (zero-shot)", "glioma", "cells", "test", None, 8)]
    assert t.rows[0][6:] == (4.0, 0.5)
    assert "resumed grid entry" in t.caption


def test_csv_has_the_caption_and_raw_values():
    (s,) = summary_tables([_ev(_entry())])
    lines = s.to_csv().splitlines()
    assert lines[0].startswith("# Performance summary (IoU threshold 0.5). dataset glioma")
    assert lines[1].startswith("Model,Mean F1,Median F1")
    assert lines[2] == "cellpose (fine-tuned),0.4125,0.4,0.25,0.65,0.5,0.45,8"


def test_the_summary_caption_names_the_std_the_table_shows():
    """The caption's "sample std" is the std of the numbers in the table: ddof 1, not the population std."""
    # Three 1-instance images scored by cellbench.metrics: F1 at IoU 0.5 is 1, 2/3 and 0.
    square = np.zeros((8, 8), np.int32)
    square[1:5, 1:5] = 1
    two = square.copy()
    two[6:8, 6:8] = 2
    far = np.zeros((8, 8), np.int32)
    far[5:8, 5:8] = 1
    result = evaluate([square, two, square], [square, square, far], names=["a", "b", "c"],
                      thresholds=[0.5]).to_dict()
    f1s = [img["by_iou"]["0.5"]["f1"] for img in result["per_image"]]
    assert f1s == pytest.approx([1.0, 2 / 3, 0.0])

    (table,) = summary_tables([_ev(_entry(), result=result)])
    row = dict(zip(table.columns, table.rows[0]))
    sample, population = statistics.stdev(f1s), statistics.pstdev(f1s)
    assert row["Std F1"] == pytest.approx(sample) and sample != pytest.approx(population)
    words = table.caption.lower()
    assert "sample std" in words and "ddof 1" in words and "n - 1" in words
    assert "population" not in words
