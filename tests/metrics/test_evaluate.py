"""Aggregation, edge cases, boundary rule, Dice and the result's JSON/CSV shape."""

import csv
import json

import numpy as np
import pytest
from skimage.segmentation import relabel_sequential

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.metrics import drop_boundary, evaluate, evaluate_image

from .helpers import dsb_pair, jitter, random_instances


def _neurips_remove_boundary_cells(mask: np.ndarray, px: int = 2) -> np.ndarray:
    """The NeurIPS-2022 challenge rule written plainly: drop every label with a pixel in the frame."""
    frame = np.ones(mask.shape, bool)
    frame[px:-px, px:-px] = False
    out = mask.copy()
    for i in np.unique(mask[frame]):
        if i:
            out[out == i] = 0
    return relabel_sequential(out)[0]


def test_boundary_rule_equals_challenge_rule_on_labels_and_instances():
    gt, pred = dsb_pair(0)
    ref = evaluate_image(_neurips_remove_boundary_cells(gt), _neurips_remove_boundary_cells(pred), thresholds=[0.5])
    by_labels = evaluate_image(gt, pred, thresholds=[0.5], boundary_px=2)
    by_inst = evaluate_image(
        InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred), thresholds=[0.5], boundary_px=2
    )
    assert by_labels.counts == ref.counts
    assert by_inst.counts[0].tp == ref.counts[0].tp and by_inst.n_gt == ref.n_gt < 125
    assert by_labels.dice == pytest.approx(ref.dice) and by_inst.dice == pytest.approx(ref.dice)


def test_boundary_rule_is_independent_per_side():
    # The GT cell touches the frame, the predicted one (smaller) does not: GT is dropped, the prediction is a FP.
    gt = np.zeros((12, 12), int)
    gt[1:6, 3:8] = 1
    pred = np.zeros((12, 12), int)
    pred[2:6, 3:8] = 1
    c = evaluate_image(gt, pred, thresholds=[0.5], boundary_px=2).counts[0]
    assert (c.tp, c.fp, c.fn) == (0, 1, 0)
    c = evaluate_image(gt, pred, thresholds=[0.5], boundary_px=1).counts[0]
    assert (c.tp, c.fp, c.fn) == (1, 0, 0)


def test_drop_boundary_looks_at_pixels_not_the_bbox():
    # The bbox starts in row 0 (inside the 2-px frame) but the mask's first two rows are empty.
    m = np.zeros((5, 4), bool)
    m[2:, 1:3] = True
    loose = InstanceSet(shape=(20, 20), instances=(Instance(mask=m, bbox=(0, 6, 5, 10)),))
    assert len(drop_boundary(loose, 2)) == 1
    assert len(drop_boundary(loose, 3)) == 0
    # Bottom and right edges: rows 18, 19 / columns 18, 19 of a 20 x 20 image are the frame.
    tight = InstanceSet(shape=(20, 20), instances=(Instance.from_mask(np.ones((3, 3), bool), offset=(15, 10)),))
    assert len(drop_boundary(tight, 2)) == 1 and len(drop_boundary(tight, 3)) == 0


@pytest.mark.parametrize("seed", range(6))
def test_dice_on_overlapping_instances_equals_dense(seed):
    rng = np.random.default_rng(seed)
    gt = random_instances(rng, n=10)
    pred = jitter(rng, gt)
    g = np.any([i.to_full(gt.shape) for i in gt], axis=0)
    p = np.any([i.to_full(pred.shape) for i in pred], axis=0)
    expected = 2 * np.count_nonzero(g & p) / (np.count_nonzero(g) + np.count_nonzero(p))
    assert evaluate_image(gt, pred).dice == pytest.approx(expected, abs=1e-12)


def test_edge_cases():
    empty = np.zeros((8, 8), np.uint16)
    one = empty.copy()
    one[2:5, 2:5] = 3
    # No GT and no prediction: nothing to count, every ratio undefined.
    r = evaluate_image(empty, empty, thresholds=[0.5])
    c = r.counts[0]
    assert (c.tp, c.fp, c.fn) == (0, 0, 0)
    assert c.precision is c.recall is c.f1 is c.ap_dsb is c.pq is None and r.dice is None
    # Predictions but no GT: all FP, ratios 0.
    c = evaluate_image(empty, one, thresholds=[0.5]).counts[0]
    assert (c.tp, c.fp, c.fn, c.precision, c.recall, c.f1, c.ap_dsb) == (0, 1, 0, 0.0, 0.0, 0.0, 0.0)
    # GT but no prediction: all FN, ratios 0.
    c = evaluate_image(one, empty, thresholds=[0.5]).counts[0]
    assert (c.tp, c.fp, c.fn, c.precision, c.recall, c.f1, c.ap_dsb) == (0, 0, 1, 0.0, 0.0, 0.0, 0.0)
    # Undefined images are left out of image means but still counted as images.
    res = evaluate([empty, one], [empty, one], thresholds=[0.5]).to_dict()
    assert res["image_mean"]["0.5"]["f1"] == 1.0 and res["image_mean"]["0.5"]["n_images"] == 1
    assert res["pooled"]["0.5"]["f1"] == 1.0 and res["n_images"] == 2
    # Pooled over only empty images: undefined.
    assert evaluate([empty], [empty]).to_dict()["pooled"]["0.5"]["f1"] is None


def test_bad_inputs_are_clear_errors():
    a = np.zeros((4, 4), int)
    with pytest.raises(DataError, match="non-integer dtype float"):
        evaluate_image(a.astype(float), a, name="x.tif")
    with pytest.raises(DataError, match="negative"):
        evaluate_image(a - 1, a)
    with pytest.raises(DataError, match=r"\(4, 4\).*\(4, 5\)"):
        evaluate_image(a, np.zeros((4, 5), int))
    with pytest.raises(DataError, match="IoU thresholds"):
        evaluate([a], [a], thresholds=[0.0])
    with pytest.raises(DataError, match="2 ground-truth images but 1"):
        evaluate([a, a], [a])


def test_json_shape_and_image_statistics():
    pairs = [dsb_pair(s) for s in range(3)]
    res = evaluate([p[0] for p in pairs], [p[1] for p in pairs], names=["a", "b", "c"])
    d = json.loads(json.dumps(res.to_dict()))
    assert d["iou_thresholds"] == [0.5, 0.75, 0.9]
    assert set(d["pooled"]) == set(d["image_mean"]) == {"0.5", "0.75", "0.9"}
    assert {"tp", "fp", "fn", "precision", "recall", "f1", "ap_dsb"} <= set(d["pooled"]["0.5"])
    assert {"precision", "recall", "f1", "f1_median", "f1_std", "ap_dsb"} <= set(d["image_mean"]["0.5"])
    assert [r["image"] for r in d["per_image"]] == ["a", "b", "c"]
    f1s = [r["by_iou"]["0.75"]["f1"] for r in d["per_image"]]
    assert d["image_mean"]["0.75"]["f1"] == pytest.approx(np.mean(f1s))
    assert d["image_mean"]["0.75"]["f1_median"] == pytest.approx(np.median(f1s))
    assert d["image_mean"]["0.75"]["f1_std"] == pytest.approx(np.std(f1s, ddof=1))
    tp = sum(r["by_iou"]["0.5"]["tp"] for r in d["per_image"])
    assert d["pooled"]["0.5"]["tp"] == tp
    assert d["settings"]["boundary_rule"] == "off"


def test_csv_has_one_row_per_image(tmp_path):
    gt, pred = dsb_pair(0)
    res = evaluate([gt, gt], [pred, gt], names=["p", "same"], thresholds=[0.5])
    res.to_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == ["p", "same"]
    assert float(rows[1]["f1@0.5"]) == 1.0 and rows[0]["tp@0.5"] == str(res.images[0].counts[0].tp)


def test_per_class_and_macro():
    rng = np.random.default_rng(3)
    gt = random_instances(rng, n=12, n_classes=2)
    pred = jitter(rng, gt, n_extra=0)
    d = evaluate([gt], [pred], per_class=True, thresholds=[0.5]).to_dict()
    per = d["per_class"]
    for name in ("c0", "c1"):
        g = gt.replace(instances=tuple(i for i in gt if gt.classes[i.class_id] == name))
        p = pred.replace(instances=tuple(i for i in pred if pred.classes[i.class_id] == name))
        alone = evaluate([g], [p], thresholds=[0.5]).to_dict()["pooled"]["0.5"]
        assert per[name]["pooled"]["0.5"] == alone
    assert per["macro"]["pooled"]["0.5"]["f1"] == pytest.approx(
        np.mean([per["c0"]["pooled"]["0.5"]["f1"], per["c1"]["pooled"]["0.5"]["f1"]])
    )
