"""One matching rule: IoU >= t, the same for the metrics and for the methods' tuning ("F1@0.5")."""

from __future__ import annotations

import numpy as np

import cellbench.methods.adapters.watershed as watershed
from cellbench.data.dataset import Sample
from cellbench.instances import InstanceSet
from cellbench.matching import Counts, match_labels, pooled
from cellbench.metrics import evaluate, evaluate_image
from cellbench.methods.adapters.watershed import WatershedConfig, WatershedMethod


def _half_cells(n: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth of n 6 x 8 rectangles; each prediction is the left half of one: IoU exactly 24 / 48."""
    gt = np.zeros((40, 12 * n), np.int32)
    pred = np.zeros_like(gt)
    for k in range(n):
        gt[10:16, 12 * k + 2 : 12 * k + 10] = k + 1
        pred[10:16, 12 * k + 2 : 12 * k + 6] = k + 1
    rng = np.random.default_rng(0)
    image = np.clip(20 + 180 * (gt > 0) + rng.normal(0, 3, gt.shape), 0, 255).astype(np.uint8)
    return gt, pred, image


def test_iou_exactly_at_the_threshold_is_a_match():
    gt, pred, _ = _half_cells()
    at_half, above = match_labels(gt, pred, (0.5, 0.5000001))
    assert (at_half.tp, at_half.fp, at_half.fn) == (4, 0, 0)
    assert (above.tp, above.fp, above.fn) == (0, 4, 4)
    assert evaluate_image(gt, pred, thresholds=(0.5,)).counts[0] == at_half


def test_tuning_and_metrics_give_the_same_f1_at_half(monkeypatch):
    """Watershed's training score and validation score are the F1@0.5 that cellbench.metrics reports."""
    gt, pred, image = _half_cells()
    metrics_f1 = evaluate([gt], [pred], thresholds=(0.5,)).pooled(0.5).f1
    assert metrics_f1 == 1.0
    monkeypatch.setattr(watershed, "_seeded", lambda fg, distance, params: pred)  # every setting predicts `pred`
    method = WatershedMethod(WatershedConfig(sigmas=(0.0,), threshold_scales=(1.0,), distance_sigmas=(0.0,),
                                             min_distance_fractions=(0.5,)))
    monkeypatch.setattr(method, "_labels", lambda img: pred)
    sample = Sample("halves", InstanceSet.from_label_image(gt), array=image)
    history = method.train([sample], [sample], seed=0)
    assert history.epochs[0].extra["train_f1"] == metrics_f1
    assert history.val_metric == "f1@0.5" and history.epochs[0].val_score == metrics_f1


def test_pooled_sums_counts_as_the_metrics_pool():
    gt, pred, _ = _half_cells()
    per_image = [match_labels(gt, pred, (0.5,))[0], match_labels(gt, np.zeros_like(pred), (0.5,))[0]]
    total = pooled(per_image)
    assert total == Counts(tp=4, fp=0, fn=4, iou_sum=2.0)
    assert total.f1 == evaluate([gt, gt], [pred, np.zeros_like(pred)], thresholds=(0.5,)).pooled(0.5).f1
    assert pooled([]) == Counts(0, 0, 0) and pooled([]).f1 is None
