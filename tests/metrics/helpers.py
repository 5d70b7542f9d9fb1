"""Shared inputs for the metric tests: the real DSB2018 image, perturbed predictions, random overlaps."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from cellbench.instances import Instance, InstanceSet


def dsb_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The real DSB2018 mask from the stardist wheel and a perturbed prediction of it.

    Nuclei are dilated, eroded or shifted, a few are dropped, two neighbours
    are merged and some false objects added, so every threshold sees TP, FP and FN.
    """
    from stardist.data import test_image_nuclei_2d

    _, gt = test_image_nuclei_2d(return_mask=True)
    gt = gt.astype(np.int32)
    rng = np.random.default_rng(seed)
    pred = np.zeros_like(gt)
    ids = np.unique(gt)[1:]
    next_id = 1000
    for i in ids:
        m = gt == i
        r = rng.random()
        if r < 0.08:
            continue
        if r < 0.3:
            m = ndimage.binary_dilation(m, iterations=int(rng.integers(1, 4)))
        elif r < 0.5:
            eroded = ndimage.binary_erosion(m, iterations=int(rng.integers(1, 3)))
            m = eroded if eroded.any() else m
        elif r < 0.65:
            m = np.roll(m, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
        pred[m & (pred == 0)] = next_id + int(i) * 3  # gaps in ids on purpose
    for _ in range(6):
        y, x = rng.integers(10, gt.shape[0] - 10), rng.integers(10, gt.shape[1] - 10)
        pred[y - 4 : y + 4, x - 4 : x + 4] = 7
    return gt, pred


def random_instances(rng: np.random.Generator, shape=(40, 48), n=8, *, scores=False, n_classes=1) -> InstanceSet:
    """Random overlapping ellipses and boxes (instances may overlap each other)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = []
    while len(out) < n:
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(2, 9), rng.uniform(2, 9)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if rng.random() < 0.3:
            m = m | ((abs(yy - cy) < ry / 2) & (abs(xx - cx) < rx))
        if not m.any():
            continue
        score = float(np.round(rng.random(), 2)) if scores else None  # rounded: ties happen
        out.append(Instance.from_mask(m, class_id=int(rng.integers(n_classes)), score=score))
    classes = tuple(f"c{k}" for k in range(n_classes))
    return InstanceSet(shape=shape, instances=tuple(out), classes=classes)


def jitter(rng: np.random.Generator, s: InstanceSet, n_extra: int = 3) -> InstanceSet:
    """A prediction near ``s``: instances shifted/grown/dropped, plus random extras, all scored."""
    out = []
    for inst in s:
        if rng.random() < 0.15:
            continue
        m = inst.to_full(s.shape)
        if rng.random() < 0.5:
            m = np.roll(m, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
        if rng.random() < 0.3:
            m = ndimage.binary_dilation(m)
        if m.any():
            out.append(Instance.from_mask(m, class_id=inst.class_id, score=float(np.round(rng.random(), 2))))
    extra = random_instances(rng, s.shape, n_extra, scores=True, n_classes=len(s.classes))
    return InstanceSet(shape=s.shape, instances=tuple(out) + extra.instances, classes=s.classes)


def dense_iou(gt: InstanceSet, pred: InstanceSet) -> np.ndarray:
    """Brute force: full-image masks, every pair."""
    size = int(np.prod(gt.shape))
    g = np.array([i.to_full(gt.shape) for i in gt]).reshape(len(gt), size)
    p = np.array([i.to_full(pred.shape) for i in pred]).reshape(len(pred), size)
    if not len(g) or not len(p):
        return np.zeros((len(g), len(p)))
    inter = g.astype(np.int64) @ p.T.astype(np.int64)
    union = g.sum(1)[:, None] + p.sum(1)[None, :] - inter
    return inter / union


def brute_force_match(iou: np.ndarray, t: float) -> tuple[int, float]:
    """The matching as StarDist writes it: a dense cost, one assignment over everything; (TP, summed IoU)."""
    n_min = min(iou.shape)
    if n_min == 0:
        return 0, 0.0
    cost = -(iou >= t).astype(float) - iou / (2 * n_min)
    r, c = linear_sum_assignment(cost)
    ok = iou[r, c] >= t
    return int(ok.sum()), float(iou[r, c][ok].sum())
