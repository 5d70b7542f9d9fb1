"""Canonical PQ (IoU > 0.5) against HoVer-Net's get_fast_pq (dense rewrite) and cellseg-metrics 0.2.0, number
for number on the real DSB2018 mask; the pair of IoU exactly 0.5 that cellbench's ``pq`` (IoU >= t) counts."""

import numpy as np
import pytest

from cellbench.instances import InstanceSet
from cellbench.matching import match_pairs, overlaps_from_instances, overlaps_from_labels
from cellbench.metrics import CanonicalPQ, ImagePair, evaluate, evaluate_image

from .helpers import dsb_pair, jitter, random_instances
from .hovernet_reference import hovernet_pq


def _canonical(gt, pred):
    ov = overlaps_from_labels(gt, pred)[0]
    c = CanonicalPQ().image(ImagePair("x", (0.5,), ov))
    return c, CanonicalPQ().values(c)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsb_equals_hovernet(seed):
    gt, pred = dsb_pair(seed)
    c, v = _canonical(gt, pred)
    tp, dq, sq, pq = hovernet_pq(gt, pred)
    assert c.tp == tp
    assert v["dq_canonical"] == pytest.approx(dq, rel=1e-15)
    # HoVer-Net divides SQ by TP + 1e-6; cellbench by TP
    assert v["sq_canonical"] == pytest.approx(sq * (tp + 1e-6) / tp, rel=1e-14)
    assert v["pq_canonical"] == pytest.approx(pq, rel=2e-6 / tp)


def test_iou_exactly_half_is_no_match():
    gt = np.array([[1, 1, 0, 0, 2, 2, 2]])
    pred = np.array([[3, 3, 3, 3, 4, 4, 4]])  # IoU 0.5 and 1.0
    c, v = _canonical(gt, pred)
    (ours,) = evaluate_image(gt, pred, thresholds=[0.5]).counts
    assert (c.tp, c.fp, c.fn) == (1, 1, 1) and v["pq_canonical"] == 1.0 / 2
    assert (ours.tp, ours.fp, ours.fn) == (2, 0, 0) and ours.pq == 1.5 / 2
    assert hovernet_pq(gt, pred)[0] == 1


def test_overlapping_ground_truth_is_matched_one_to_one():
    rng = np.random.default_rng(4)
    for _ in range(20):
        gt = random_instances(rng, n=10)
        pred = jitter(rng, gt)
        ov = overlaps_from_instances(gt, pred)
        pos = match_pairs(ov, 0.5, strict=True)
        assert np.unique(ov.gt_index[pos]).size == np.unique(ov.pred_index[pos]).size == pos.size
        assert (ov.iou[pos] > 0.5).all()
        assert pos.size == match_pairs(ov, np.nextafter(0.5, 1.0)).size  # > 0.5 is >= the next float


def test_evaluate_reports_it_beside_the_matching_pq():
    gt, pred = dsb_pair(0)
    res = evaluate([gt], [pred], thresholds=[0.5], metrics=["pq_canonical"]).to_dict()
    c, v = _canonical(gt, pred)
    assert res["per_image"][0]["pq_canonical"] == v["pq_canonical"]
    assert res["pooled"]["0.5"]["pq_canonical"] == v["pq_canonical"]  # one image: pooled = the image's
    assert res["pooled"]["0.5"]["pq"] >= v["pq_canonical"]
    assert "IoU > 0.5" in res["settings"]["metrics"]["pq_canonical"]["convention"]
    inst = evaluate([InstanceSet.from_label_image(gt)], [InstanceSet.from_label_image(pred)], thresholds=[0.5],
                    metrics=["pq_canonical"]).to_dict()
    assert inst["pooled"] == res["pooled"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dsb_equals_cellseg_metrics(seed):
    cellseg_metrics = pytest.importorskip("cellseg_metrics")  # pip install --no-deps cellseg-metrics==0.2.0
    gt, pred = dsb_pair(seed)
    c, v = _canonical(gt, pred)
    ref = cellseg_metrics.panoptic_quality(gt, pred, thresh=0.5)
    n_pred = np.unique(pred).size - 1
    # cellseg-metrics' precision TP / (TP + FP + 1e-8) gives its TP back exactly
    assert round(cellseg_metrics.average_precision(gt, pred, thresh=0.5) * n_pred) == c.tp
    # its numbers carry 1e-8 in every denominator: they agree to 1e-9 relative
    for key in ("pq", "dq", "sq"):
        assert v[f"{key}_canonical"] == pytest.approx(float(ref[key]), rel=1e-9)
