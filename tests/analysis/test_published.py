"""Published metric names and the comparison with a run: values equal the evaluator's, intervals behave."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.analysis import compare_published, metric_value, parse_metric, task_accuracy
from cellbench.errors import DataError
from cellbench.metrics import evaluate


def _labels(n_cells: int, shift: int, n_missed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """GT of ``n_cells`` 4 x 4 squares in a row; the prediction shifted by ``shift`` px, ``n_missed`` left out."""
    gt = np.zeros((8, 6 * n_cells), np.int32)
    pred = np.zeros_like(gt)
    for k in range(n_cells):
        gt[2:6, 6 * k:6 * k + 4] = k + 1
        if k >= n_missed:
            pred[2:6, 6 * k + shift:6 * k + 4 + shift] = k + 1
    return gt, pred


@pytest.fixture(scope="module")
def result():
    pairs = [_labels(7, 0), _labels(3, 1, n_missed=1), _labels(12, 2)]
    return evaluate([g for g, _ in pairs], [p for _, p in pairs], thresholds=[0.5, 0.75]).to_dict()


def test_names_parse_into_what_they_compute():
    assert parse_metric("f1@0.5").kind == "pooled"
    assert (parse_metric("median_recall@0.75").statistic, parse_metric("median_recall@0.75").threshold) == ("median", 0.75)
    assert parse_metric("mean_ap_dsb@0.5[100+]").bin == "100+"
    assert parse_metric("seggal_accuracy").kind == parse_metric("coco_ar75").kind == "coco"
    for bad in ("ap@0.5", "f1@1.5", "f1", "median_f1@0.5[6-10]", "mean_f1@0.5[5-9]", "max_dice"):
        with pytest.raises(DataError, match="metric"):
            parse_metric(bad)


def test_values_are_the_evaluators(result):
    pooled, image = result["pooled"], result["image_mean"]
    for base in ("precision", "recall", "f1", "ap_dsb"):
        for t in ("0.5", "0.75"):
            assert metric_value(result, f"{base}@{t}") == pytest.approx(pooled[t][base])
            assert metric_value(result, f"mean_{base}@{t}") == pytest.approx(image[t][base])
            assert metric_value(result, f"median_{base}@{t}") == pytest.approx(image[t][f"{base}_median"])
            assert metric_value(result, f"std_{base}@{t}") == pytest.approx(image[t][f"{base}_std"])
    assert metric_value(result, "mean_dice") == pytest.approx(image["0.5"]["dice"])
    # bins by GT count: 7 cells (6-10), 3 cells (no bin), 12 cells (11-20)
    f1s = [img["by_iou"]["0.5"]["f1"] for img in result["per_image"]]
    assert metric_value(result, "mean_f1@0.5[6-10]") == pytest.approx(f1s[0])
    assert metric_value(result, "mean_f1@0.5[11-20]") == pytest.approx(f1s[2])
    assert metric_value(result, "mean_f1@0.5[21-50]") is None
    coco = {"map": 0.5, "ap50": 0.8, "ap75": 0.5, "ar50": 0.9, "ar75": 0.55}
    assert metric_value({"coco": coco}, "seggal_accuracy") == task_accuracy(coco) == 0.65
    assert metric_value({"coco": coco}, "coco_ap75") == 0.5 and metric_value({}, "coco_map") is None


def test_one_seed_interval_is_over_images(result):
    c = compare_published(0.5, "f1@0.5", {0: result}, n_boot=300)
    assert c.measured == pytest.approx(result["pooled"]["0.5"]["f1"])
    assert c.low <= c.measured <= c.high and c.n_images == 3 and "over images" in c.interval
    assert c.difference == pytest.approx(c.measured - 0.5)
    assert c.inside == (c.low <= 0.5 <= c.high)
    # every image the same: no spread at all
    same = {"per_image": [result["per_image"][0]] * 4}
    c = compare_published(0.5, "mean_f1@0.5", {0: same}, n_boot=100)
    assert c.low == c.high == pytest.approx(result["per_image"][0]["by_iou"]["0.5"]["f1"])


def test_statistics_across_seeds_and_bounds():
    def run(f1):
        tp = round(100 * f1 / (2 - f1))  # fp = fn = (100 - tp) / 2 gives pooled F1 = tp / 100 exactly
        return {"per_image": [{"by_iou": {"0.5": {"tp": tp, "fp": (100 - tp) // 2, "fn": (100 - tp) // 2}}}],
                "coco": {"map": f1}}
    seeds = {s: run(f) for s, f in enumerate((0.6, 0.7, 0.9))}
    values = [metric_value(r, "f1@0.5") for r in seeds.values()]
    mean = compare_published(0.7, "f1@0.5", seeds, n_boot=400)
    assert mean.measured == pytest.approx(np.mean(values)) and mean.seeds == (0, 1, 2)
    # one image per seed: the images add nothing, the interval is that of resampled seeds
    assert min(values) - 1e-9 <= mean.low < mean.measured < mean.high <= max(values) + 1e-9
    assert "two-level" in mean.interval
    assert compare_published(0.7, "f1@0.5", seeds, statistic="median").measured == pytest.approx(sorted(values)[1])
    best = compare_published(0.95, "f1@0.5", seeds, statistic="max", relation=">")
    assert best.measured == pytest.approx(max(values)) and best.inside is False  # never above 0.95
    assert compare_published(0.5, "f1@0.5", seeds, relation=">").inside is True
    coco = compare_published(0.7, "coco_map", seeds, n_boot=400)  # no per-image parts: across seeds only
    assert coco.measured == pytest.approx(np.mean([0.6, 0.7, 0.9])) and 0.6 <= coco.low <= coco.high <= 0.9
    assert "across the 3 seeds" in coco.interval
    one = compare_published(0.7, "coco_map", {0: seeds[0]})
    assert (one.low, one.high, one.inside) == (None, None, None) and one.interval.startswith("none")


def test_nothing_to_compare():
    c = compare_published(0.5, "f1@0.5", {})
    assert (c.measured, c.low, c.difference, c.inside, c.seeds) == (None, None, None, None, ())
    c = compare_published(None, "f1@0.5", {0: {"per_image": [{"by_iou": {"0.5": {"tp": 1, "fp": 0, "fn": 0}}}]}})
    assert c.measured == 1.0 and c.difference is None and c.inside is None
    with pytest.raises(DataError, match="statistic"):
        compare_published(0.5, "f1@0.5", {}, statistic="mode")
