"""Bootstrap intervals and paired tests against numpy done by hand and scipy on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cellbench.analysis import bootstrap_interval, image_counts, paired_comparison
from cellbench.errors import DataError
from cellbench.metrics import evaluate

# (tp, fp, fn) per image at IoU 0.5
A = [(8, 2, 1), (5, 0, 4), (9, 1, 1), (0, 3, 2), (7, 1, 0), (4, 4, 4), (6, 0, 1), (3, 2, 5)]
B = [(7, 3, 2), (5, 1, 4), (6, 2, 4), (1, 2, 1), (7, 2, 0), (2, 5, 6), (6, 1, 1), (2, 2, 6)]


def _per_image(counts, names=None, threshold="0.5"):
    names = names or [f"img{k}" for k in range(len(counts))]
    return [{"image": n, "by_iou": {threshold: {"tp": tp, "fp": fp, "fn": fn}}}
            for n, (tp, fp, fn) in zip(names, counts)]


def test_hand_computed_three_images_against_numpy_with_the_same_rng():
    counts = np.array([(8, 2, 1), (5, 0, 4), (9, 1, 1)])
    r = bootstrap_interval(counts, "ap_dsb", n_boot=500, seed=7)
    idx = np.random.default_rng(7).integers(0, 3, size=(500, 3))
    values = []
    for row in idx:
        tp, fp, fn = counts[row].sum(axis=0)
        values.append(tp / (tp + fp + fn))
    assert r.estimate == pytest.approx(22 / (22 + 3 + 6))
    assert (r.low, r.high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
    assert (r.n_images, r.n_boot, r.level, r.seed, r.n_undefined) == (3, 500, 0.95, 7, 0)
    assert "500 resamples" in r.method and "default_rng(7)" in r.method


@pytest.mark.parametrize("metric", ["f1", "ap_dsb", "precision", "recall"])
def test_fixed_seed_is_reproducible_and_the_interval_holds_the_estimate(metric):
    r1 = bootstrap_interval(A, metric, seed=3)
    r2 = bootstrap_interval(A, metric, seed=3)
    assert r1 == r2
    assert r1.low < r1.estimate < r1.high
    assert bootstrap_interval(A, metric, seed=4) != r1
    tp, fp, fn = np.sum(A, axis=0)
    expected = {"f1": 2 * tp / (2 * tp + fp + fn), "ap_dsb": tp / (tp + fp + fn), "precision": tp / (tp + fp),
                "recall": tp / (tp + fn)}[metric]
    assert r1.estimate == pytest.approx(expected)


def test_estimate_equals_the_evaluations_pooled_value():
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(5):
        g = np.zeros((20, 20), int)
        p = np.zeros((20, 20), int)
        for k in range(1, 5):
            y, x = rng.integers(0, 16, 2)
            g[y : y + 4, x : x + 4] = k
            p[y : y + 4, x + rng.integers(0, 3) : x + 4] = k
        gts.append(g)
        preds.append(p)
    d = evaluate(gts, preds, thresholds=[0.5]).to_dict()
    ic = image_counts(d["per_image"], 0.5)
    r = bootstrap_interval(ic, "f1", n_boot=200)
    assert r.estimate == pytest.approx(d["pooled"]["0.5"]["f1"])
    assert r.threshold == 0.5 and r.n_images == 5


def test_empty_resamples_are_undefined_and_counted():
    r = bootstrap_interval([(0, 0, 0), (2, 1, 1)], "f1", n_boot=400, seed=0)
    idx = np.random.default_rng(0).integers(0, 2, size=(400, 2))
    assert r.n_undefined == int(np.sum((idx == 0).all(axis=1)))
    assert r.n_undefined > 0 and r.low == r.high == pytest.approx(2 / 3)
    assert bootstrap_interval([], "f1").estimate is None


def test_identical_methods_differ_by_zero_with_p_one():
    r = paired_comparison(_per_image(A), _per_image(A), "f1", 0.5, n_boot=300, seed=1)
    assert r.difference == 0.0 and r.low == 0.0 and r.high == 0.0
    assert r.p_bootstrap == 1.0 and r.p_wilcoxon == 1.0 and r.wilcoxon_statistic is None
    assert "every per-image F1 difference is 0" in r.wilcoxon_note


def test_paired_bootstrap_uses_the_same_images_for_both():
    r = paired_comparison(_per_image(A), _per_image(B), "ap_dsb", 0.5, n_boot=400, seed=5)
    ca, cb = np.array(A), np.array(B)
    idx = np.random.default_rng(5).integers(0, len(A), size=(400, len(A)))
    sa, sb = ca[idx].sum(axis=1), cb[idx].sum(axis=1)
    d = sa[:, 0] / sa.sum(axis=1) - sb[:, 0] / sb.sum(axis=1)
    assert r.difference == pytest.approx(ca[:, 0].sum() / ca.sum() - cb[:, 0].sum() / cb.sum())
    assert (r.low, r.high) == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])))
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    assert r.p_bootstrap == pytest.approx(min(1.0, 2 * (tail + 1) / 401))
    assert r.n_images == 8 and r == paired_comparison(_per_image(A), _per_image(B), "ap_dsb", 0.5, n_boot=400,
                                                      seed=5)


def test_wilcoxon_equals_scipy_on_per_image_f1_in_any_image_order():
    names = [f"img{k}" for k in range(len(A))]
    b_shuffled = _per_image(B[::-1], names[::-1])  # same images, other order
    r = paired_comparison(_per_image(A), b_shuffled, "f1", 0.5, n_boot=50)
    f1 = lambda c: [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in c]  # noqa: E731
    ref = stats.wilcoxon(f1(A), f1(B))
    assert r.wilcoxon_statistic == pytest.approx(ref.statistic)
    assert r.p_wilcoxon == pytest.approx(ref.pvalue)
    assert r.n_wilcoxon == 8


def test_different_image_sets_are_refused_naming_both():
    with pytest.raises(DataError, match="cellpose.*stardist.*not scored on the same images.*img7.*x9"):
        paired_comparison(_per_image(A), _per_image(B, [*[f"img{k}" for k in range(7)], "x9"]), "f1", 0.5,
                          names=("cellpose", "stardist"))
    with pytest.raises(DataError, match="no TP / FP / FN at IoU 0.75"):
        paired_comparison(_per_image(A), _per_image(B), "f1", 0.75)
    with pytest.raises(DataError, match="metric must be one of"):
        bootstrap_interval(A, "pq")
