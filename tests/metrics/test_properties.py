"""Metric invariants on label images and overlapping instance sets drawn by hypothesis.

Relabelling ids changes nothing; swapping GT and prediction swaps FP and FN
and keeps TP, F1 and the matched IoU; TP <= min(n_gt, n_pred) and falls as the
threshold rises; and the sparse matching equals a brute-force dense IoU matrix
solved by scipy's linear_sum_assignment with the same cost.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cellbench.instances import InstanceSet  # noqa: E402
from cellbench.metrics import evaluate_image, match, overlaps_from_instances, overlaps_from_labels  # noqa: E402

from ..instances.strategies import instance_sets, label_pairs  # noqa: E402
from .helpers import brute_force_match, dense_iou  # noqa: E402

FAST = settings(max_examples=120, deadline=None)
# Low thresholds make conflicts (one instance with two candidates), where the assignment matters.
THRESHOLDS = (0.1, 0.3, 0.5, 0.75, 0.9)


def _counts(gt, pred):
    return match(overlaps_from_labels(gt, pred)[0], THRESHOLDS)


def _n(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.unique(labels)))


@st.composite
def relabelled(draw, labels: np.ndarray) -> np.ndarray:
    """``labels`` with its ids sent to other distinct ids (order shuffled, some huge), 0 kept."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    new = draw(st.lists(st.integers(1, 2**40), min_size=ids.size, max_size=ids.size, unique=True))
    out = np.zeros(labels.shape, np.int64)
    for old, value in zip(ids.tolist(), new):
        out[labels == old] = value
    return out


@FAST
@given(st.data())
def test_relabelling_gt_or_prediction_changes_nothing(data):
    gt, pred = data.draw(label_pairs())
    before = _counts(gt, pred)
    after = _counts(data.draw(relabelled(gt)), data.draw(relabelled(pred)))
    for a, b in zip(before, after):
        assert (a.tp, a.fp, a.fn) == (b.tp, b.fp, b.fn)
        assert a.iou_sum == pytest.approx(b.iou_sum, rel=1e-12, abs=1e-12)


@FAST
@given(label_pairs())
def test_swapping_gt_and_prediction_swaps_fp_and_fn(pair):
    gt, pred = pair
    for a, b in zip(_counts(gt, pred), _counts(pred, gt)):
        assert (a.tp, a.fp, a.fn) == (b.tp, b.fn, b.fp)
        assert a.f1 == b.f1 and a.ap_dsb == b.ap_dsb
        assert a.iou_sum == pytest.approx(b.iou_sum, rel=1e-12, abs=1e-12)


@FAST
@given(label_pairs())
def test_counts_are_bounded_and_fall_as_the_threshold_rises(pair):
    gt, pred = pair
    n_gt, n_pred = _n(gt), _n(pred)
    counts = _counts(gt, pred)
    for c in counts:
        assert 0 <= c.tp <= min(n_gt, n_pred)
        assert (c.fp, c.fn) == (n_pred - c.tp, n_gt - c.tp)
        assert 0.0 <= c.iou_sum <= c.tp + 1e-12
    assert [c.tp for c in counts] == sorted((c.tp for c in counts), reverse=True)
    # the labels path and the instances path agree
    by_inst = evaluate_image(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred),
                             thresholds=THRESHOLDS).counts
    assert [(c.tp, c.fp, c.fn) for c in by_inst] == [(c.tp, c.fp, c.fn) for c in counts]


def _assert_brute_force(gt: InstanceSet, pred: InstanceSet) -> None:
    iou = dense_iou(gt, pred)
    ov = overlaps_from_instances(gt, pred)
    np.testing.assert_allclose(ov.dense_iou(), iou, rtol=0, atol=1e-15)
    for t, c in zip(THRESHOLDS, match(ov, THRESHOLDS)):
        tp, iou_sum = brute_force_match(iou, t)
        assert c.tp == tp
        assert c.iou_sum == pytest.approx(iou_sum, abs=1e-9)


@FAST
@given(label_pairs())
def test_label_images_match_as_brute_force_does(pair):
    gt, pred = pair
    _assert_brute_force(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred))


@FAST
@given(st.data())
def test_overlapping_instances_match_as_brute_force_does(data):
    gt = data.draw(instance_sets(max_instances=7))
    _assert_brute_force(gt, data.draw(instance_sets(shape=gt.shape, max_instances=7)))
