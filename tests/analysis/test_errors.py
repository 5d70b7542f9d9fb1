"""Error analysis on hand-made cases: splits, merges, recall per bin, eccentricity against scikit-image, maps."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import regionprops

from cellbench.analysis import (
    AREA_BINS,
    ERROR_COLORS,
    eccentricities,
    error_map,
    error_rows,
    error_summary,
    image_errors,
)
from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet


def _labels(rows: list[str]) -> InstanceSet:
    """A label image from strings of digits ('.' is background)."""
    return InstanceSet.from_label_image(np.array([[0 if c == "." else int(c) for c in r] for r in rows], np.uint16))


def test_split_one_cell_cut_in_three():
    gt = InstanceSet.from_label_image(np.pad(np.ones((10, 10), np.uint8), 2))
    pred = np.zeros((14, 14), np.uint8)
    pred[2:12, 2:5], pred[2:12, 5:8], pred[2:12, 8:12] = 1, 2, 3
    e = image_errors(gt, InstanceSet.from_label_image(pred))
    assert e.gt_matched.tolist() == [False]  # best IoU 0.4
    assert e.gt_fragments.tolist() == [3] and e.n_split_gt == 1 and e.n_merge_pred == 0
    s = error_summary([e])
    assert (s.n_split_gt, s.n_split_fragments, s.n_merge_pred, s.n_merged_gt) == (1, 3, 0, 0)
    assert (s.n_gt, s.n_pred, s.n_tp) == (1, 3, 0)


def test_merge_two_cells_in_one_prediction():
    gt = _labels(["11111.22222"] * 4)
    pred = _labels(["11111111111"] * 4)  # IoU with each cell 20 / 44 < 0.5
    e = image_errors(gt, pred)
    assert e.pred_merged.tolist() == [2] and e.n_merge_pred == 1 and not e.gt_matched.any()
    s = error_summary([e])
    assert (s.n_merge_pred, s.n_merged_gt, s.n_split_gt) == (1, 2, 0)


def test_containment_is_half_of_the_own_area_inclusive():
    gt = _labels(["1111...."])
    pred = _labels(["..111111"])  # 2 of its 6 px inside: not in; the GT has 2 of 4 px in it: in (50 %)
    e = image_errors(gt, pred)
    assert e.gt_fragments.tolist() == [0] and e.pred_merged.tolist() == [1]


def test_clean_prediction_has_no_split_or_merge():
    gt = _labels(["11..22", "11..22"])
    s = error_summary([image_errors(gt, gt)])
    assert (s.n_tp, s.n_split_gt, s.n_merge_pred) == (2, 0, 0)


def test_overlapping_ground_truth_is_matched_as_it_is():
    a = Instance.from_mask(np.ones((4, 4), bool), offset=(0, 0))
    b = Instance.from_mask(np.ones((4, 4), bool), offset=(1, 1))
    gt = InstanceSet((6, 6), (a, b))
    e = image_errors(gt, gt)
    assert e.gt_matched.all() and e.pred_matched.all()


def test_recall_and_precision_by_area_bin():
    labels = np.zeros((60, 60), np.uint16)
    labels[1:5, 1:5] = 1  # 16 px: "<64 px"
    labels[10:20, 10:20] = 2  # 100 px: "64-255 px"
    labels[30:50, 30:50] = 3  # 400 px: "256-1023 px"
    gt = InstanceSet.from_label_image(labels)
    pred = InstanceSet.from_label_image(np.where(labels == 1, 0, labels))  # misses the small one
    extra = np.zeros((60, 60), np.uint16)
    extra[55:58, 55:58] = 1  # a 9 px false positive
    pred = pred.replace(instances=pred.instances + InstanceSet.from_label_image(extra).instances)
    s = error_summary([image_errors(gt, pred)])
    by = {b.label: b for b in s.bins if b.kind == "area"}
    small, mid, big = (by[label] for label, _, _ in AREA_BINS[:3])
    assert (small.n_gt, small.n_gt_matched, small.recall) == (1, 0, 0.0)
    assert (small.n_pred, small.precision) == (1, 0.0)
    assert (mid.recall, big.recall, mid.precision) == (1.0, 1.0, 1.0)
    assert by[AREA_BINS[4][0]].recall is None  # no GT in the bin: undefined, not 0
    rows = error_rows(s)
    assert len(rows) == len(s.bins) and rows[-1]["high"] is None and rows[0]["threshold"] == 0.5
    shape = [b for b in s.bins if b.kind == "eccentricity"]
    assert sum(b.n_gt for b in shape) == 3 and shape[0].n_gt == 3  # squares are round (e = 0)


def test_pooled_over_images_and_thresholds_must_agree():
    gt = _labels(["11.22"])
    e1, e2 = image_errors(gt, gt, image="a"), image_errors(gt, _labels(["11..."]), image="b")
    s = error_summary([e1, e2])
    assert (s.n_images, s.n_gt, s.n_tp) == (2, 4, 3)
    with pytest.raises(DataError, match="different IoU"):
        error_summary([e1, image_errors(gt, gt, threshold=0.75)])
    with pytest.raises(DataError, match="threshold"):
        image_errors(gt, gt, threshold=0)


def test_eccentricity_matches_regionprops():
    rng = np.random.default_rng(3)
    for _ in range(5):
        labels = np.zeros((40, 40), np.uint8)
        r0, c0 = rng.integers(2, 15, size=2)
        h, w = rng.integers(2, 20, size=2)
        labels[r0 : r0 + h, c0 : c0 + w] = 1
        labels[r0 : r0 + 2, c0 : c0 + rng.integers(1, 18)] = 1  # a ragged edge
        ecc = eccentricities(InstanceSet.from_label_image(labels))[0]
        assert ecc == pytest.approx(regionprops(labels)[0].eccentricity, abs=1e-9)


def test_error_map_colours():
    gt = _labels(["11...22", "11...22"])
    pred = _labels(["11.3...", "11.3..."])  # cell 1 found, cell 2 missed, 3 invented
    e = image_errors(gt, pred)
    grey = np.full((2, 7, 3), 100, np.uint8)
    rgb = error_map(grey, gt, pred, e)
    assert tuple(rgb[0, 0]) == ERROR_COLORS["tp"]  # TP outline
    assert tuple(rgb[0, 5]) == ERROR_COLORS["fn"] and tuple(rgb[0, 3]) == ERROR_COLORS["fp"]  # outlines of fills
    assert tuple(rgb[0, 2]) == (100, 100, 100)  # background untouched
    assert (grey == 100).all()  # the input is not painted
    with pytest.raises(DataError, match="picture"):
        error_map(grey[..., 0], gt, pred, e)
