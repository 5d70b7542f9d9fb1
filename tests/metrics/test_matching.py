"""Matching counts against StarDist, Cellpose and brute force."""

import numpy as np
import pytest

from cellbench.instances import InstanceSet
from cellbench.metrics import Counts, evaluate, evaluate_image, match, overlaps_from_instances, overlaps_from_labels

from .helpers import brute_force_match, dense_iou, dsb_pair, jitter, random_instances

stardist_matching = pytest.importorskip("stardist.matching")

THRESHOLDS = [0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95]


def _compare_stardist(counts: Counts, ref) -> None:
    assert (counts.tp, counts.fp, counts.fn) == (ref.tp, ref.fp, ref.fn)
    assert counts.precision == pytest.approx(ref.precision, abs=1e-12)
    assert counts.recall == pytest.approx(ref.recall, abs=1e-12)
    assert counts.f1 == pytest.approx(ref.f1, abs=1e-12)
    assert counts.ap_dsb == pytest.approx(ref.accuracy, abs=1e-12)
    # StarDist sums IoUs in float32: the counts are exact, IoU sums agree to float32 precision.
    assert counts.mean_matched_iou == pytest.approx(ref.mean_matched_score, rel=1e-6)
    assert counts.pq == pytest.approx(ref.panoptic_quality, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsb_equals_stardist_labels_and_instances(seed):
    gt, pred = dsb_pair(seed)
    refs = stardist_matching.matching(gt, pred, thresh=THRESHOLDS)
    by_labels = evaluate_image(gt, pred, thresholds=THRESHOLDS)
    by_instances = evaluate_image(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred), thresholds=THRESHOLDS)
    assert by_labels.n_gt == 125
    for c_lab, c_inst, ref in zip(by_labels.counts, by_instances.counts, refs):
        _compare_stardist(c_lab, ref)
        _compare_stardist(c_inst, ref)
    assert by_labels.dice == pytest.approx(by_instances.dice)


def test_pooled_equals_stardist_matching_dataset():
    pairs = [dsb_pair(s) for s in range(3)]
    gts, preds = [p[0] for p in pairs], [p[1] for p in pairs]
    res = evaluate(gts, preds, thresholds=[0.5, 0.7]).to_dict()
    for t in (0.5, 0.7):
        ref = stardist_matching.matching_dataset(gts, preds, thresh=t, show_progress=False, by_image=False)
        got = res["pooled"][repr(t)]
        assert (got["tp"], got["fp"], got["fn"]) == (ref.tp, ref.fp, ref.fn)
        assert got["f1"] == pytest.approx(ref.f1, abs=1e-12)
        assert got["ap_dsb"] == pytest.approx(ref.accuracy, abs=1e-12)
        assert got["pq"] == pytest.approx(ref.panoptic_quality, rel=1e-6)


def test_dsb_equals_cellpose_average_precision():
    cp_metrics = pytest.importorskip("cellpose.metrics")
    from skimage.segmentation import relabel_sequential

    gt, pred = dsb_pair(0)
    # Cellpose takes n = labels.max(), so it needs ids 1..n: with gaps (the DSB mask has
    # 125 nuclei with ids up to 183) it counts absent ids as FN / FP. cellbench counts instances.
    gt, pred = relabel_sequential(gt)[0], relabel_sequential(pred)[0]
    ap, tp, fp, fn = cp_metrics.average_precision([gt], [pred], threshold=THRESHOLDS)
    got = evaluate_image(gt, pred, thresholds=THRESHOLDS).counts
    assert [c.tp for c in got] == tp[0].astype(int).tolist()
    assert [c.fp for c in got] == fp[0].astype(int).tolist()
    assert [c.fn for c in got] == fn[0].astype(int).tolist()
    assert [c.ap_dsb for c in got] == pytest.approx(ap[0].tolist(), rel=1e-6)  # Cellpose returns float32


@pytest.mark.parametrize("seed", range(12))
def test_overlapping_instances_equal_dense_hungarian(seed):
    rng = np.random.default_rng(seed)
    gt = random_instances(rng, n=int(rng.integers(0, 14)))
    pred = jitter(rng, gt)
    iou = dense_iou(gt, pred)
    ov = overlaps_from_instances(gt, pred)
    np.testing.assert_array_equal(ov.dense_iou(), iou)
    for t, c in zip(THRESHOLDS, match(ov, THRESHOLDS)):
        tp, iou_sum = brute_force_match(iou, t)
        assert c.tp == tp
        assert c.iou_sum == pytest.approx(iou_sum, abs=1e-9)
        assert (c.fp, c.fn) == (len(pred) - tp, len(gt) - tp)


def test_conflicts_at_low_threshold_use_assignment():
    # One GT covered by two predictions, each IoU > 0.3: only one may match.
    gt = np.zeros((10, 10), int)
    gt[2:8, 2:8] = 1
    pred = np.zeros((10, 10), int)
    pred[2:8, 2:5] = 1
    pred[2:8, 5:8] = 2
    c = evaluate_image(gt, pred, thresholds=[0.3]).counts[0]
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    assert c.iou_sum == pytest.approx(0.5)


def test_label_ids_with_gaps_and_unsorted_dtypes():
    gt = np.array([[0, 5, 5, 0, 900]], dtype=np.uint16)
    pred = np.array([[0, 2, 2, 0, 0]], dtype=np.uint64)
    ov, gids, pids = overlaps_from_labels(gt, pred)
    assert gids.tolist() == [5, 900] and pids.tolist() == [2]
    c = match(ov, [0.5])[0]
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)
    huge = np.array([[0, 2**40, 2**40]], dtype=np.int64)
    c = evaluate_image(huge, huge, thresholds=[0.5]).counts[0]
    assert (c.tp, c.fp, c.fn) == (1, 0, 0)
