"""Sparse pairwise overlaps between ground-truth and predicted instances.

Every metric in :mod:`cellbench.metrics`, and every score a method tunes on,
starts from the intersection of each GT instance with each predicted instance
that it touches. Instances are
bbox-cropped masks, so only pairs whose bounding boxes intersect are compared
(pairs are found in chunks, so 10,000 x 10,000 instances never build a dense
matrix), and overlapping instances on either side are handled like any other.
For two label images there is a faster path that counts pixel pairs directly
(in runs of equal pairs along the rows, so it touches each pixel once, in the
images' own dtype). :class:`PixelPairCounts` gives the same overlaps from two
label images fed a band of rows at a time, for images too large to hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import InstanceSet

__all__ = ["Overlaps", "PixelPairCounts", "overlaps_from_instances", "overlaps_from_labels"]

_CHUNK = 2048  # GT instances per block of the bbox test


@dataclass(frozen=True)
class Overlaps:
    """Intersections of every touching (GT, prediction) pair of one image.

    Attributes:
        gt_area, pred_area: pixel counts per instance.
        gt_index, pred_index: the pairs that share at least one pixel.
        intersection: shared pixels per pair.

    >>> ov = Overlaps(np.array([4]), np.array([4, 2]), np.array([0]), np.array([0]), np.array([2]))
    >>> ov.iou
    array([0.33333333])
    """

    gt_area: np.ndarray
    pred_area: np.ndarray
    gt_index: np.ndarray
    pred_index: np.ndarray
    intersection: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_area.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_area.size)

    @cached_property
    def iou(self) -> np.ndarray:
        """IoU per pair, float64, computed as pycocotools does (``i / (a + b - i)``)."""
        inter = self.intersection.astype(np.float64)
        union = self.gt_area[self.gt_index] + self.pred_area[self.pred_index] - self.intersection
        return inter / union.astype(np.float64)

    def dense_iou(self) -> np.ndarray:
        """The full ``n_gt x n_pred`` IoU matrix (for small images and tests)."""
        out = np.zeros((self.n_gt, self.n_pred))
        out[self.gt_index, self.pred_index] = self.iou
        return out

    def select(self, gt_keep: np.ndarray, pred_keep: np.ndarray) -> Overlaps:
        """Only the GT and predicted instances flagged in the two boolean arrays, renumbered."""
        gt_new = np.cumsum(gt_keep) - 1
        pred_new = np.cumsum(pred_keep) - 1
        pairs = gt_keep[self.gt_index] & pred_keep[self.pred_index]
        return Overlaps(
            self.gt_area[gt_keep],
            self.pred_area[pred_keep],
            gt_new[self.gt_index[pairs]],
            pred_new[self.pred_index[pairs]],
            self.intersection[pairs],
        )


def _bboxes(instances: InstanceSet) -> np.ndarray:
    if not len(instances):
        return np.zeros((0, 4), dtype=np.int64)
    return np.array([i.bbox for i in instances], dtype=np.int64)


def overlaps_from_instances(gt: InstanceSet, pred: InstanceSet) -> Overlaps:
    """Intersections of GT and predicted instances (either side may overlap itself).

    >>> a = InstanceSet.from_label_image(np.array([[1, 1, 0], [0, 2, 2]]))
    >>> b = InstanceSet.from_label_image(np.array([[1, 1, 1], [0, 0, 0]]))
    >>> ov = overlaps_from_instances(a, b)
    >>> ov.gt_index, ov.pred_index, ov.intersection
    (array([0]), array([0]), array([2]))
    """
    if tuple(gt.shape) != tuple(pred.shape):
        raise DataError(f"ground truth is {tuple(gt.shape)} but prediction is {tuple(pred.shape)}")
    gb, pb = _bboxes(gt), _bboxes(pred)
    gi_all, pj_all = [], []
    for start in range(0, len(gb), _CHUNK):
        g = gb[start : start + _CHUNK, None, :]
        touch = (
            (g[..., 0] < pb[None, :, 2])
            & (pb[None, :, 0] < g[..., 2])
            & (g[..., 1] < pb[None, :, 3])
            & (pb[None, :, 1] < g[..., 3])
        )
        gi, pj = np.nonzero(touch)
        gi_all.append(gi + start)
        pj_all.append(pj)
    gi = np.concatenate(gi_all) if gi_all else np.zeros(0, np.int64)
    pj = np.concatenate(pj_all) if pj_all else np.zeros(0, np.int64)
    # Intersection window of each candidate pair, then one crop-and-count per pair.
    y0 = np.maximum(gb[gi, 0], pb[pj, 0])
    x0 = np.maximum(gb[gi, 1], pb[pj, 1])
    y1 = np.minimum(gb[gi, 2], pb[pj, 2])
    x1 = np.minimum(gb[gi, 3], pb[pj, 3])
    gy, gx = y0 - gb[gi, 0], x0 - gb[gi, 1]
    py, px = y0 - pb[pj, 0], x0 - pb[pj, 1]
    h, w = y1 - y0, x1 - x0
    gmasks = [i.mask for i in gt.instances]
    pmasks = [i.mask for i in pred.instances]
    inter = np.empty(gi.size, dtype=np.int64)
    count = np.count_nonzero
    for k, (a, b, ay, ax, by, bx, hh, ww) in enumerate(
        zip(gi.tolist(), pj.tolist(), gy.tolist(), gx.tolist(), py.tolist(), px.tolist(), h.tolist(), w.tolist())
    ):
        inter[k] = count(gmasks[a][ay : ay + hh, ax : ax + ww] & pmasks[b][by : by + hh, bx : bx + ww])
    keep = inter > 0
    return Overlaps(gt.areas, pred.areas, gi[keep], pj[keep], inter[keep])


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"{what} label image must be 2-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{what} label image has non-integer dtype {labels.dtype}")
    return labels


def _check_ids(ids: np.ndarray, what: str) -> np.ndarray:
    """Run values as intp-safe ids (uint64 as int64); every pixel value is among them, so negatives show here."""
    if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
        raise DataError(f"{what} label image has negative ids")
    return ids.astype(np.int64) if ids.dtype == np.uint64 else ids


def overlaps_from_labels(gt: np.ndarray, pred: np.ndarray) -> tuple[Overlaps, np.ndarray, np.ndarray]:
    """Intersections of two label images by counting pixel pairs, plus the ids of both sides.

    Ids may have gaps; instance ``k`` of each side is the ``k``-th smallest
    non-zero id (the returned id arrays). Non-integer or negative labels are
    refused.

    >>> ov, gids, pids = overlaps_from_labels(np.array([[1, 1, 0, 5]]), np.array([[0, 7, 7, 7]]))
    >>> gids, pids, ov.intersection, ov.iou
    (array([1, 5]), array([7]), array([1, 1]), array([0.25      , 0.33333333]))
    """
    gt = _check_labels(gt, "ground-truth")
    pred = _check_labels(pred, "predicted")
    if gt.shape != pred.shape:
        raise DataError(f"ground truth is {gt.shape} but prediction is {pred.shape}")
    g, p, n = _runs(gt.ravel(), pred.ravel())
    g, p = _check_ids(g, "ground-truth"), _check_ids(p, "predicted")
    g_top = int(g.max()) + 1 if g.size else 1
    p_top = int(p.max()) + 1 if p.size else 1
    if g_top * p_top <= _MAX_TABLE:
        # One pass: the full contingency table of (GT id, predicted id) pixel pairs.
        table = _bincount(g.astype(np.int64) * p_top + p, n, g_top * p_top).reshape(g_top, p_top)
        gids = np.flatnonzero(table[1:].any(axis=1)) + 1
        pids = np.flatnonzero(table[:, 1:].any(axis=0)) + 1
        inner = table[np.ix_(gids, pids)]
        gi, pj = np.nonzero(inner)
        ov = Overlaps(table[gids].sum(axis=1), table[:, pids].sum(axis=0), gi, pj, inner[gi, pj].astype(np.int64))
        return ov, gids, pids
    gids, garea, g_index = _ids_and_areas(g, n)
    pids, parea, p_index = _ids_and_areas(p, n)
    both = (g != 0) & (p != 0)
    gb, pb, nb = g[both], p[both], None if n is None else n[both]
    g_top, p_top = (int(gb.max()) + 1, int(pb.max()) + 1) if gb.size else (1, 1)
    if g_top * p_top <= _MAX_DENSE_KEYS:
        counts = _bincount(gb.astype(np.int64) * p_top + pb, nb)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
        gv, pv = np.divmod(keys, p_top)
    elif g_top * p_top < 2**62:
        keys, inter = _totals(gb.astype(np.int64) * p_top + pb, nb)
        gv, pv = np.divmod(keys, p_top)
    else:
        (gv, pv), inter = _totals(np.stack([gb, pb]), nb, axis=1)
    ov = Overlaps(garea, parea, g_index(gv), p_index(pv), inter.astype(np.int64))
    return ov, gids, pids


#: Largest (GT id x predicted id) table counted in one pass over the pixels.
_MAX_TABLE = 1 << 22
#: Largest id range counted with one bincount (larger ranges sort instead).
_MAX_DENSE_KEYS = 1 << 24


def _runs(g: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The two flat label images as runs of equal (GT id, predicted id) pixels: ids at each run's start and
    its length.

    Labels are piecewise constant, so a Glioma-size image of ~5 million pixels has ~50,000 runs: this
    pass reads the pixels once, in their own dtype, and everything after it counts runs, not pixels
    (about twice as fast as Cellpose's numba ``_label_overlap``, benchmarks/metrics_speed.py). For
    fragmented labels (more runs than a quarter of the pixels) the pixels themselves are returned,
    with length None (one each).

    >>> _runs(np.repeat([1, 1, 0], 4), np.repeat([0, 2, 2], 4))
    (array([1, 1, 0]), array([0, 2, 2]), array([4, 4, 4]))
    """
    if g.size == 0:
        return g, p, None
    change = np.empty(g.size, dtype=bool)
    change[0] = True
    np.not_equal(g[1:], g[:-1], out=change[1:])
    change[1:] |= p[1:] != p[:-1]
    starts = np.flatnonzero(change)
    if starts.size > g.size // 4:
        return g, p, None
    return g[starts], p[starts], np.diff(starts, append=g.size)


def _bincount(keys: np.ndarray, weights: np.ndarray | None, minlength: int = 0) -> np.ndarray:
    """``np.bincount`` as int64 counts; with run lengths as weights (float sums of integers, exact below 2**53)."""
    out = np.bincount(keys, weights=weights, minlength=minlength)
    return out if weights is None else out.astype(np.int64)


def _totals(keys: np.ndarray, weights: np.ndarray | None, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (sorted; columns with ``axis=1``) and the summed weight of each (their count without weights)."""
    if weights is None:
        return np.unique(keys, axis=axis, return_counts=True)
    uniq, inverse = np.unique(keys, axis=axis, return_inverse=True)
    return uniq, _bincount(inverse.reshape(-1), weights)


def _ids_and_areas(flat: np.ndarray, weights: np.ndarray | None):
    """Non-zero ids (sorted), their pixel counts, and a function mapping ids to their index."""
    top = int(flat.max()) if flat.size else 0
    if top < _MAX_DENSE_KEYS:
        counts = _bincount(flat, weights, top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        lookup = np.zeros(top + 1, dtype=np.int64)
        lookup[ids] = np.arange(ids.size)
        return ids, counts[ids].astype(np.int64), lambda v: lookup[v]
    nz = flat != 0
    ids, areas = _totals(flat[nz], None if weights is None else weights[nz])
    return ids, areas.astype(np.int64), lambda v: np.searchsorted(ids, v)


class PixelPairCounts:
    """Pixel pairs of two label images fed in aligned bands of rows (:meth:`add`), summed as they come.

    :meth:`overlaps` equals :func:`overlaps_from_labels` of the whole images
    (the same arrays in the same order: pairs by GT id, then predicted id),
    whatever the bands: an instance cut by a band border is one id whose
    pixels are summed over the bands. Memory is the distinct (GT id,
    predicted id) pairs seen, not the pixels.

    >>> c = PixelPairCounts()
    >>> c.add(np.array([[1, 1, 0, 5]]), np.array([[0, 7, 7, 7]]))
    >>> c.add(np.array([[1, 0, 0, 5]]), np.array([[0, 0, 7, 7]]))
    >>> ov, gids, pids = c.overlaps()
    >>> gids, ov.gt_area, ov.intersection, ov.iou
    (array([1, 5]), array([3, 2]), array([1, 2]), array([0.14285714, 0.4       ]))
    """

    _COMPACT = 1 << 20  # pairs of the bands so far that are summed into one set of distinct pairs

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Count the pixel pairs of one band (the same rows of both images)."""
        gt = _check_labels(gt, "ground-truth")
        pred = _check_labels(pred, "predicted")
        if gt.shape != pred.shape:
            raise DataError(f"ground-truth band is {gt.shape} but predicted band is {pred.shape}")
        g, p, n = _runs(gt.ravel(), pred.ravel())
        g, p = _check_ids(g, "ground-truth").astype(np.int64), _check_ids(p, "predicted").astype(np.int64)
        part = _distinct(g, p, np.ones(g.size, np.int64) if n is None else n.astype(np.int64))
        self._parts.append(part)
        self._pending += part[0].size
        if self._pending > self._COMPACT:
            self._compact()

    def _compact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every band so far summed into distinct (GT id, predicted id) pairs, sorted, with their pixel counts."""
        if len(self._parts) != 1:
            empty = np.zeros(0, np.int64)
            self._parts = [_distinct(*(np.concatenate(a) for a in zip(*self._parts))) if self._parts
                           else (empty, empty, empty)]
            self._pending = 0
        return self._parts[0]

    def overlaps(self, *, drop_gt: np.ndarray | None = None, drop_pred: np.ndarray | None = None
                 ) -> tuple[Overlaps, np.ndarray, np.ndarray]:
        """The overlaps and ids of both sides (as :func:`overlaps_from_labels`), leaving out the ids in
        ``drop_gt`` / ``drop_pred`` as if their pixels were 0 (the boundary rule)."""
        g, p, n = self._compact()
        gids, garea = _summed(g, n, drop_gt)
        pids, parea = _summed(p, n, drop_pred)
        both = np.isin(g, gids) & np.isin(p, pids)
        ov = Overlaps(garea, parea, np.searchsorted(gids, g[both]), np.searchsorted(pids, p[both]), n[both])
        return ov, gids, pids


def _distinct(g: np.ndarray, p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (GT id, predicted id) pairs (sorted: by GT id, then predicted id) and their summed counts."""
    if g.size and int(g.max()) < 2**31 and int(p.max()) < 2**32:
        keys, n = _totals((g << 32) | p, n)
        g, p = keys >> 32, keys & 0xFFFFFFFF
    elif g.size:
        (g, p), n = _totals(np.stack([g, p]), n, axis=1)
    return g, p, n.astype(np.int64)


def _summed(ids: np.ndarray, counts: np.ndarray, drop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-zero ids (sorted, less ``drop``) and their summed pixel counts."""
    keep = ids != 0
    if drop is not None and len(drop):
        keep &= ~np.isin(ids, drop)
    uniq, inverse = np.unique(ids[keep], return_inverse=True)
    return uniq.astype(np.int64), np.bincount(inverse.reshape(-1), counts[keep], uniq.size).astype(np.int64)
