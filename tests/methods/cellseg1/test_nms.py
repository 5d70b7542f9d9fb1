import numpy as np
import pytest

from cellbench.instances import Instance
from cellbench.methods.adapters.cellseg1.nms import (
    box_nms,
    box_overlap_matrix,
    crop_mask_iou,
    mask_nms_pairwise,
    two_stage_mask_nms,
)


def random_candidates(n, shape, seed):
    """Random blobs (disks and rectangles, some duplicated with jitter) as cropped masks."""
    rng = np.random.default_rng(seed)
    masks, boxes = [], []
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    for _ in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(2, 12)
        if rng.random() < 0.5:
            full = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        else:
            full = np.zeros(shape, bool)
            full[max(0, cy - r) : cy + r, max(0, cx - 2 * r) : cx + r] = True
        full &= rng.random(shape) < 0.95  # ragged masks
        if not full.any():
            full[cy, cx] = True
        inst = Instance.from_mask(full)
        masks.append(inst.mask)
        boxes.append(inst.bbox)
    scores = rng.random(n)
    scores[: n // 10] = scores[n // 10 : 2 * (n // 10)]  # ties
    return masks, np.array(boxes), scores


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.3])
def test_two_stage_keeps_exactly_what_pure_mask_nms_keeps(seed, threshold):
    masks, boxes, scores = random_candidates(150, (80, 90), seed)
    fast = two_stage_mask_nms(masks, boxes, scores, iou_threshold=threshold)
    pure = mask_nms_pairwise(masks, boxes, scores, (80, 90), iou_threshold=threshold)
    assert fast.tolist() == pure.tolist()
    assert 0 < len(fast) < 150


def test_crop_iou_matches_full_masks():
    masks, boxes, _ = random_candidates(30, (40, 40), 3)
    for i in range(30):
        for j in range(30):
            a = Instance(masks[i], tuple(boxes[i])).to_full((40, 40))
            b = Instance(masks[j], tuple(boxes[j])).to_full((40, 40))
            union = np.count_nonzero(a | b)
            expected = np.count_nonzero(a & b) / union if union else 0.0
            assert crop_mask_iou(masks[i], boxes[i], masks[j], boxes[j]) == pytest.approx(expected)


def test_box_nms_drops_distinct_cells_that_mask_nms_keeps():
    # two L-shaped cells interlocking: boxes overlap a lot, masks do not overlap at all
    a = np.zeros((10, 10), bool)
    a[:, :3] = True
    a[7:, :] = True
    b = np.zeros((10, 10), bool)
    b[:6, 4:] = True
    ia, ib = Instance.from_mask(a), Instance.from_mask(b)
    boxes = np.array([ia.bbox, ib.bbox])
    scores = np.array([0.9, 0.8])
    assert two_stage_mask_nms([ia.mask, ib.mask], boxes, scores).tolist() == [0, 1]
    assert box_nms(boxes, scores, iou_threshold=0.05).tolist() == [0]


def test_box_overlap_and_empty_inputs():
    assert box_overlap_matrix(np.array([[0, 0, 1, 1], [1, 1, 2, 2]])).tolist() == [[True, False], [False, True]]
    assert two_stage_mask_nms([], np.zeros((0, 4)), np.zeros(0)).size == 0
    assert mask_nms_pairwise([], np.zeros((0, 4)), np.zeros(0), (4, 4)).size == 0
