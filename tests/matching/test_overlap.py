"""Sparse overlaps of GT and predicted instances: exact IoUs, both paths, every id range, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pycocotools.mask as mask_utils
import pytest

import cellbench.matching.overlap as overlap_module
from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet, instance_to_rle
from cellbench.matching import Overlaps, overlaps_from_instances, overlaps_from_labels


def _disk(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _same(a: Overlaps, b: Overlaps) -> None:
    """Equal as sets of pairs (the two paths may list pairs in different orders)."""
    np.testing.assert_array_equal(a.gt_area, b.gt_area)
    np.testing.assert_array_equal(a.pred_area, b.pred_area)
    np.testing.assert_array_equal(a.dense_iou(), b.dense_iou())
    pairs_a = sorted(zip(a.gt_index.tolist(), a.pred_index.tolist(), a.intersection.tolist()))
    pairs_b = sorted(zip(b.gt_index.tolist(), b.pred_index.tolist(), b.intersection.tolist()))
    assert pairs_a == pairs_b


def test_shifted_squares_have_the_exact_iou():
    # 10 x 10 squares shifted by 5 columns: 50 shared pixels of a 150-pixel union.
    gt = np.zeros((20, 30), np.uint8)
    pred = np.zeros((20, 30), np.uint8)
    gt[5:15, 5:15] = 1
    pred[5:15, 10:20] = 9
    ov, gids, pids = overlaps_from_labels(gt, pred)
    assert gids.tolist() == [1] and pids.tolist() == [9]
    assert ov.gt_area.tolist() == [100] and ov.pred_area.tolist() == [100]
    assert ov.intersection.tolist() == [50] and ov.iou.tolist() == [1 / 3]
    by_inst = overlaps_from_instances(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred))
    _same(ov, by_inst)


def test_disk_and_its_half_and_a_far_disk():
    shape = (40, 60)
    disk = _disk(shape, 20, 15, 8)
    half = disk & (np.arange(shape[1]) <= 15)[None, :]
    far = _disk(shape, 20, 48, 8)
    gt = InstanceSet(shape, (Instance.from_mask(disk), Instance.from_mask(far)))
    pred = InstanceSet(shape, (Instance.from_mask(half),))
    ov = overlaps_from_instances(gt, pred)
    # The far disk touches nothing: only one pair is listed; the half lies inside the disk, IoU = |half| / |disk|.
    assert ov.n_gt == 2 and ov.n_pred == 1
    assert ov.gt_index.tolist() == [0] and ov.pred_index.tolist() == [0]
    assert ov.intersection.tolist() == [np.count_nonzero(half)]
    assert ov.iou[0] == np.count_nonzero(half) / np.count_nonzero(disk)
    assert ov.dense_iou().tolist() == [[np.count_nonzero(half) / np.count_nonzero(disk)], [0.0]]


def test_overlapping_instances_on_one_side_each_count_their_shared_pixels():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True  # 16 px
    b[4:8, 4:8] = True  # 16 px, 4 shared with a
    gt = InstanceSet((10, 10), (Instance.from_mask(a), Instance.from_mask(b)))
    pred = InstanceSet((10, 10), (Instance.from_mask(a | b),))  # 28 px
    ov = overlaps_from_instances(gt, pred)
    assert ov.intersection.tolist() == [16, 16]
    np.testing.assert_allclose(ov.iou, [16 / 28, 16 / 28])


def test_iou_equals_pycocotools_on_random_instances():
    rng = np.random.default_rng(7)
    shape = (48, 64)

    def random_disks(n: int) -> InstanceSet:
        centres = rng.uniform((0, 0), shape, size=(n, 2))
        return InstanceSet(shape, tuple(Instance.from_mask(_disk(shape, cy, cx, rng.uniform(2, 10))) for cy, cx in centres))

    gt, pred = random_disks(12), random_disks(10)
    ref = mask_utils.iou([instance_to_rle(i, shape) for i in pred], [instance_to_rle(i, shape) for i in gt],
                         [0] * len(gt))
    np.testing.assert_allclose(overlaps_from_instances(gt, pred).dense_iou(), np.asarray(ref).T, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "gt_offset, pred_offset",
    [
        (0, 0),  # ids up to ~20: one contingency table
        (3000, 2999),  # table too large, one bincount of the pixel pairs
        (100_000, 200_000),  # id pairs sorted with np.unique
        (2**40, 2**40),  # id products beyond 2**62: unique over (gt, pred) columns
    ],
)
def test_every_id_range_gives_the_overlaps_of_the_instances(gt_offset, pred_offset):
    rng = np.random.default_rng(gt_offset % 97)
    gt = rng.integers(0, 12, size=(24, 30)).astype(np.int64)
    pred = np.roll(gt, 2, axis=1) * (rng.random(gt.shape) < 0.8)
    gt_big = np.where(gt > 0, gt + gt_offset, 0)
    pred_big = np.where(pred > 0, pred + pred_offset, 0)
    ov, gids, pids = overlaps_from_labels(gt_big, pred_big)
    assert gids.tolist() == sorted(set(gt_big.ravel().tolist()) - {0})
    assert pids.tolist() == sorted(set(pred_big.ravel().tolist()) - {0})
    _same(ov, overlaps_from_instances(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred)))


def test_unsigned_and_signed_dtypes_agree():
    gt = np.array([[0, 3, 3, 7], [0, 3, 7, 7]])
    pred = np.array([[1, 1, 0, 2], [1, 1, 2, 2]])
    ref, _, _ = overlaps_from_labels(gt, pred)
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64, np.int16, np.int32):
        _same(overlaps_from_labels(gt.astype(dt), pred.astype(dt))[0], ref)


def test_chunks_of_the_bbox_test_give_the_same_pairs(monkeypatch):
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 30, size=(40, 40))
    pred = np.roll(gt, 1, axis=0)
    a, b = InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred)
    whole = overlaps_from_instances(a, b)
    monkeypatch.setattr(overlap_module, "_CHUNK", 4)
    _same(overlaps_from_instances(a, b), whole)


def test_empty_sides():
    empty = np.zeros((5, 6), np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 4
    for gt, pred, n_gt, n_pred in ((empty, empty, 0, 0), (one, empty, 1, 0), (empty, one, 0, 1)):
        ov, gids, pids = overlaps_from_labels(gt, pred)
        assert (ov.n_gt, ov.n_pred, ov.iou.size, gids.size, pids.size) == (n_gt, n_pred, 0, n_gt, n_pred)
        inst = overlaps_from_instances(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred))
        assert (inst.n_gt, inst.n_pred, inst.iou.size) == (n_gt, n_pred, 0)
        assert inst.dense_iou().shape == (n_gt, n_pred)


def test_select_keeps_flagged_instances_and_renumbers():
    gt = np.array([[1, 1, 2, 2, 3, 3]])
    pred = np.array([[5, 5, 6, 6, 7, 7]])
    ov, _, _ = overlaps_from_labels(gt, pred)
    sub = ov.select(np.array([False, True, True]), np.array([True, False, True]))
    assert sub.gt_area.tolist() == [2, 2] and sub.pred_area.tolist() == [2, 2]
    # GT 3 (now 1) still meets prediction 7 (now 1); GT 2 met prediction 6, which is gone.
    assert (sub.gt_index.tolist(), sub.pred_index.tolist(), sub.intersection.tolist()) == ([1], [1], [2])
    assert sub.dense_iou().tolist() == [[0.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    "gt, pred, problem",
    [
        (np.zeros((2, 3, 4), int), np.zeros((2, 3, 4), int), "ground-truth label image must be 2-D, got shape (2, 3, 4)"),
        (np.zeros((3, 4), int), np.zeros((3, 4), float), "predicted label image has non-integer dtype float64"),
        (np.full((3, 4), -1), np.zeros((3, 4), int), "ground-truth label image has negative ids"),
        (np.zeros((3, 4), int), np.zeros((4, 3), int), "ground truth is (3, 4) but prediction is (4, 3)"),
        (np.zeros((3, 4), bool), np.zeros((3, 4), int), "ground-truth label image has non-integer dtype bool"),
    ],
)
def test_bad_label_images_are_data_errors(gt, pred, problem):
    with pytest.raises(DataError) as info:
        overlaps_from_labels(gt, pred)
    assert str(info.value) == problem


def test_instance_sets_of_different_images_are_refused():
    a = InstanceSet.from_label_image(np.ones((3, 4), int))
    b = InstanceSet.from_label_image(np.ones((4, 4), int))
    with pytest.raises(DataError, match=r"ground truth is \(3, 4\) but prediction is \(4, 4\)"):
        overlaps_from_instances(a, b)


def _blocky_labels(rng, shape, n_ids) -> np.ndarray:
    """Piecewise-constant labels (cells of 1-40 px rows and 1-60 px columns), as segmentations are."""
    small = rng.integers(0, n_ids + 1, size=(shape[0] // 4, shape[1] // 6))
    return np.repeat(np.repeat(small, 4, axis=0), 6, axis=1)


@pytest.mark.parametrize(
    "gt_offset, pred_offset",
    [(0, 0), (3000, 2999), (100_000, 200_000), (2**40, 2**40)],  # each id range of the previous test
)
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint64])
def test_runs_and_pixels_give_identical_overlaps(gt_offset, pred_offset, dtype, monkeypatch):
    if np.iinfo(dtype).max < max(gt_offset, pred_offset) + 40:
        pytest.skip("ids do not fit the dtype")
    rng = np.random.default_rng(5)
    gt = _blocky_labels(rng, (48, 60), 30)
    pred = np.roll(gt, (1, 3), axis=(0, 1)) * (_blocky_labels(rng, (48, 60), 1) > 0)
    gt_big = np.where(gt > 0, gt + gt_offset, 0).astype(dtype)
    pred_big = np.where(pred > 0, pred + pred_offset, 0).astype(dtype)
    g, p, lengths = overlap_module._runs(gt_big.ravel(), pred_big.ravel())
    assert lengths is not None and lengths.sum() == gt.size and g.size < gt.size // 4  # the run path is taken
    by_runs = overlaps_from_labels(gt_big, pred_big)
    monkeypatch.setattr(overlap_module, "_runs", lambda g, p: (g, p, None))  # every pixel its own run
    by_pixels = overlaps_from_labels(gt_big, pred_big)
    for a, b in zip((*dataclasses.astuple(by_runs[0]), *by_runs[1:]), (*dataclasses.astuple(by_pixels[0]), *by_pixels[1:])):
        assert a.dtype == b.dtype and a.tolist() == b.tolist()  # the same arrays, in the same order
    _same(by_runs[0], overlaps_from_instances(InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred)))


def test_runs_span_row_ends_and_fragmented_labels_fall_back_to_pixels():
    gt = np.array([[0, 0, 1], [1, 1, 2]])
    pred = np.array([[0, 0, 0], [0, 3, 3]])
    g, p, lengths = overlap_module._runs(np.tile(gt.ravel(), 10), np.tile(pred.ravel(), 10))
    assert lengths is None and g.size == 60  # 40 runs in 60 pixels: counted pixel by pixel
    g, p, lengths = overlap_module._runs(np.repeat(gt.ravel(), 10), np.repeat(pred.ravel(), 10))
    # (1, 0) runs from the end of row 0 into row 1: one run of 20 pixels.
    assert (g.tolist(), p.tolist(), lengths.tolist()) == ([0, 1, 1, 2], [0, 0, 3, 3], [20, 20, 10, 10])


def test_negative_ids_are_refused_on_either_path():
    gt = np.zeros((8, 8), np.int32)
    gt[2:6, 2:6] = -3
    with pytest.raises(DataError, match="^predicted label image has negative ids$"):
        overlaps_from_labels(np.zeros((8, 8), np.int32), gt)
    noise = np.random.default_rng(0).integers(-2, 3, size=(8, 8))
    with pytest.raises(DataError, match="^ground-truth label image has negative ids$"):
        overlaps_from_labels(noise, np.zeros((8, 8), np.int64))
