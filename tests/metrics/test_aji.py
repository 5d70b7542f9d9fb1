"""AJI and AJI+ equal HoVer-Net's get_fast_aji / get_fast_aji_plus (a dense rewrite of them in
hovernet_reference.py), on the real DSB2018 mask and on small cases with known answers."""

import numpy as np
import pytest

from cellbench.instances import InstanceSet
from cellbench.matching import overlaps_from_instances, overlaps_from_labels
from cellbench.metrics import aji_parts, aji_plus_parts, evaluate

from .helpers import dsb_pair
from .hovernet_reference import hovernet_aji, hovernet_aji_plus


def _both(gt, pred):
    ov = overlaps_from_labels(gt, pred)[0]
    return aji_parts(ov).index, aji_plus_parts(ov).index


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsb_equals_hovernet(seed):
    gt, pred = dsb_pair(seed)
    aji, aji_plus = _both(gt, pred)
    assert aji == hovernet_aji(gt, pred)  # C and U are pixel counts: equal to the last bit
    assert aji_plus == hovernet_aji_plus(gt, pred)
    assert 0.5 < aji <= aji_plus < 1  # a prediction over two cells (merged neighbours) costs AJI more


def test_instances_give_the_label_numbers():
    gt, pred = dsb_pair(3)
    ov = overlaps_from_instances(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred))
    assert (aji_parts(ov).index, aji_plus_parts(ov).index) == _both(gt, pred)


def test_one_prediction_over_two_cells():
    gt = np.array([[1, 1, 1, 1, 2, 2]])
    pred = np.ones_like(gt)
    assert _both(gt, pred) == (6 / 12, 4 / 8) == (hovernet_aji(gt, pred), hovernet_aji_plus(gt, pred))


def test_equal_iou_goes_to_the_larger_pair_as_hovernet():
    # GT 1 covers 0..5. Prediction 1 covers 0..1 (IoU 2/6), prediction 2 covers 3..8 (IoU 3/9): tied IoU.
    # HoVer-Net ranks by inter / (union + 1e-6), so the larger pair (prediction 2) wins although it comes second.
    gt = np.array([[1, 1, 1, 1, 1, 1, 0, 0, 0]])
    pred = np.array([[1, 1, 0, 2, 2, 2, 2, 2, 2]])
    assert _both(gt, pred)[0] == 3 / 11 == hovernet_aji(gt, pred)


def test_edge_cases():
    empty = np.zeros((4, 4), np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 5
    assert _both(empty, empty) == (None, None)  # nothing on either side: undefined
    assert _both(one, empty) == (0.0, 0.0)
    assert _both(empty, one) == (0.0, 0.0)
    assert _both(one, one) == (1.0, 1.0)


def test_evaluate_pools_summed_parts_and_averages_images():
    pairs = [dsb_pair(s) for s in (0, 1)]
    res = evaluate([g for g, _ in pairs], [p for _, p in pairs], thresholds=[0.5, 0.75],
                   metrics=["matching", "aji", "aji_plus"]).to_dict()
    parts = [aji_parts(overlaps_from_labels(g, p)[0]) for g, p in pairs]
    per_image = [r["aji"] for r in res["per_image"]]
    assert per_image == [x.index for x in parts]
    for key in ("0.5", "0.75"):  # threshold-free: the same beside every threshold
        assert res["pooled"][key]["aji"] == (parts[0] + parts[1]).index
        assert res["image_mean"][key]["aji"] == pytest.approx(np.mean(per_image), abs=1e-15)
        assert res["image_mean"][key]["aji_plus_median"] is not None
    assert "dice" not in res["per_image"][0]  # not asked for
    assert "Kumar" in res["settings"]["metrics"]["aji"]["title"]


def test_cellseg_metrics_aji_is_another_pairing():
    cellseg_metrics = pytest.importorskip("cellseg_metrics")  # pip install --no-deps cellseg-metrics==0.2.0
    # cellseg-metrics 0.2.0 pairs each GT with its prediction of largest *intersection*, HoVer-Net with largest IoU.
    gt = np.zeros((1, 20), np.int32)
    gt[0, :10] = 1
    pred = np.zeros_like(gt)
    pred[0, :6] = 1
    pred[0, 10:20] = 1  # intersection 6, IoU 6 / 20
    pred[0, 6:10] = 2  # intersection 4, IoU 4 / 10
    assert _both(gt, pred)[0] == 4 / 26 == hovernet_aji(gt, pred)
    assert cellseg_metrics.aggregated_jaccard_index(gt, pred) == pytest.approx(6 / 24, rel=1e-9)
