"""Mask non-maximum suppression: CellSeg1's two-stage NMS and the references it is measured against.

Greedy NMS keeps the best-scoring mask and drops every remaining mask whose
IoU with it exceeds a threshold. Pure mask NMS computes the IoU of every pair
of masks; box NMS compares boxes only and so drops distinct cells whose boxes
overlap. CellSeg1's two-stage NMS (paper, Algorithm 1) computes a mask IoU
only for pairs whose boxes overlap, which gives exactly the kept set of pure
mask NMS (masks whose boxes are disjoint have IoU 0) at a fraction of the work.

Masks are bbox-cropped booleans with ``(y0, x0, y1, x1)`` boxes, as
:class:`~cellbench.instances.Instance` stores them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["box_nms", "box_overlap_matrix", "crop_mask_iou", "mask_nms_pairwise", "two_stage_mask_nms"]


def _order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep input order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def box_overlap_matrix(boxes: np.ndarray) -> np.ndarray:
    """N x N booleans: do half-open boxes ``(y0, x0, y1, x1)`` i and j share a pixel?

    >>> box_overlap_matrix(np.array([[0, 0, 2, 2], [1, 1, 3, 3], [2, 2, 4, 4]])).astype(int).tolist()
    [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    """
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    rows = (b[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < b[:, None, 2])
    cols = (b[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < b[:, None, 3])
    return rows & cols


def crop_mask_iou(mask_a: np.ndarray, box_a: Sequence[int], mask_b: np.ndarray, box_b: Sequence[int]) -> float:
    """IoU of two bbox-cropped masks, reading only the boxes' intersection for the overlap.

    >>> a = np.ones((2, 2), bool); b = np.ones((2, 2), bool)
    >>> crop_mask_iou(a, (0, 0, 2, 2), b, (1, 1, 3, 3))
    0.14285714285714285
    """
    y0, x0 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    y1, x1 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    area_a, area_b = int(np.count_nonzero(mask_a)), int(np.count_nonzero(mask_b))
    inter = 0
    if y0 < y1 and x0 < x1:
        sa = mask_a[y0 - box_a[0] : y1 - box_a[0], x0 - box_a[1] : x1 - box_a[1]]
        sb = mask_b[y0 - box_b[0] : y1 - box_b[0], x0 - box_b[1] : x1 - box_b[1]]
        inter = int(np.count_nonzero(sa & sb))
    union = area_a + area_b - inter
    return inter / union if union else 0.0


def two_stage_mask_nms(
    masks: Sequence[np.ndarray], boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float = 0.05
) -> np.ndarray:
    """Indices kept by greedy mask NMS, computing mask IoU only where boxes overlap (best first).

    >>> m = np.ones((2, 2), bool)
    >>> two_stage_mask_nms([m, m, m], np.array([[0, 0, 2, 2], [0, 0, 2, 2], [5, 5, 7, 7]]), np.array([0.5, 0.9, 0.1]))
    array([1, 2])
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    overlap = box_overlap_matrix(boxes)  # stage 1: which pairs can overlap at all
    alive = np.ones(n, dtype=bool)
    kept = []
    for k in _order(scores):
        if not alive[k]:
            continue
        kept.append(k)
        alive[k] = False
        for i in np.flatnonzero(overlap[k] & alive):  # stage 2: mask IoU only there
            if crop_mask_iou(masks[k], boxes[k], masks[i], boxes[i]) > iou_threshold:
                alive[i] = False
    return np.asarray(kept, dtype=np.int64)


def _pairwise_intersections(
    masks: Sequence[np.ndarray], boxes: np.ndarray, shape: tuple[int, int], *, band_pixels: int = 1 << 15
) -> np.ndarray:
    """N x N pixel counts of every pair's intersection, from full-image masks in horizontal bands.

    Each band is an N x (rows * width) 0/1 matrix; its product with its
    transpose adds that band's intersections (torch when installed).
    """
    n = len(masks)
    h, w = shape
    rows_per_band = max(1, band_pixels // max(w, 1))
    inter = np.zeros((n, n), dtype=np.float64)
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    for r0 in range(0, h, rows_per_band):
        r1 = min(h, r0 + rows_per_band)
        band = np.zeros((n, r1 - r0, w), dtype=np.float32)
        for j, (m, b) in enumerate(zip(masks, boxes)):
            y0, y1 = max(b[0], r0), min(b[2], r1)
            if y0 < y1:
                band[j, y0 - r0 : y1 - r0, b[1] : b[3]] = m[y0 - b[0] : y1 - b[0]]
        flat = band.reshape(n, -1)
        if torch is not None:
            t = torch.from_numpy(flat)
            inter += (t @ t.T).double().numpy()
        else:  # pragma: no cover
            inter += flat @ flat.T
    return inter


def mask_nms_pairwise(
    masks: Sequence[np.ndarray],
    boxes: np.ndarray,
    scores: np.ndarray,
    shape: tuple[int, int],
    *,
    iou_threshold: float = 0.05,
) -> np.ndarray:
    """Pure mask NMS: the IoU of every pair of full-image masks, then the greedy pass (the reference).

    >>> m = np.ones((2, 2), bool)
    >>> mask_nms_pairwise([m, m, m], np.array([[0, 0, 2, 2], [0, 0, 2, 2], [5, 5, 7, 7]]), np.array([0.5, 0.9, 0.1]), (8, 8))
    array([1, 2])
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    inter = _pairwise_intersections(masks, boxes, shape)
    inter = np.rint(inter).astype(np.int64)  # exact integer counts (< 2**24 per image)
    area = np.diag(inter).copy()
    union = area[:, None] + area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    alive = np.ones(n, dtype=bool)
    kept = []
    for k in _order(scores):
        if not alive[k]:
            continue
        kept.append(k)
        alive[k] = False
        alive &= ~(iou[k] > iou_threshold)
    return np.asarray(kept, dtype=np.int64)


def box_nms(boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float = 0.05) -> np.ndarray:
    """Box-only NMS (what SAM's automatic mask generator does); torchvision when available.

    >>> box_nms(np.array([[0, 0, 4, 4], [0, 1, 4, 5], [8, 8, 9, 9]]), np.array([0.9, 0.8, 0.7]), iou_threshold=0.5).tolist()
    [0, 2]
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        import torch
        import torchvision

        xyxy = torch.from_numpy(boxes[:, [1, 0, 3, 2]].astype(np.float32))
        keep = torchvision.ops.nms(xyxy, torch.from_numpy(np.asarray(scores, dtype=np.float32)), iou_threshold)
        return keep.numpy().astype(np.int64)
    except ImportError:  # pragma: no cover
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        alive = np.ones(len(boxes), dtype=bool)
        kept = []
        for k in _order(scores):
            if not alive[k]:
                continue
            kept.append(k)
            alive[k] = False
            y0 = np.maximum(boxes[k, 0], boxes[:, 0])
            x0 = np.maximum(boxes[k, 1], boxes[:, 1])
            y1 = np.minimum(boxes[k, 2], boxes[:, 2])
            x1 = np.minimum(boxes[k, 3], boxes[:, 3])
            inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
            alive &= ~(inter / (areas[k] + areas - inter) > iou_threshold)
        return np.asarray(kept, dtype=np.int64)
