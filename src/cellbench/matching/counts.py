"""Optimal one-to-one matching at IoU thresholds, and the counts it gives.

The assignment is the one of StarDist, Cellpose and the NeurIPS-2022 challenge:
Hungarian matching with cost ``-(iou >= t) - iou / (2 * n_min)`` where
``n_min = min(n_gt, n_pred)``, so the number of pairs with IoU >= t is
maximised first and their summed IoU second. A pair is a true positive when its
IoU is >= t.

The matrix is never built densely. Pairs that share no pixel cost nothing, so
the optimum splits over connected groups of touching instances; at t >= 0.5
on non-overlapping instances every group holds at most one candidate pair and
no assignment is run at all. Only groups where an instance has two or more
candidates at t go through :func:`scipy.optimize.linear_sum_assignment`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cellbench.matching.overlap import Overlaps, overlaps_from_labels

__all__ = ["Counts", "match", "match_labels", "match_pairs", "pooled"]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass(frozen=True)
class Counts:
    """TP / FP / FN at one IoU threshold, and the summed IoU of the true positives.

    Ratios with a zero denominator are 0 (as StarDist), except that an image
    with no ground truth and no prediction has every ratio undefined (None):
    there was nothing to find and nothing was found, which is neither a success
    to average in nor a failure.

    >>> c = Counts(tp=8, fp=2, fn=4, iou_sum=6.4)
    >>> c.precision, c.recall, round(c.f1, 4), c.ap_dsb, round(c.pq, 4)
    (0.8, 0.6666666666666666, 0.7273, 0.5714285714285714, 0.5818)
    """

    tp: int
    fp: int
    fn: int
    iou_sum: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.iou_sum + other.iou_sum)

    @property
    def empty(self) -> bool:
        return self.tp + self.fp + self.fn == 0

    def _or_none(self, value: float) -> float | None:
        return None if self.empty else value

    @property
    def precision(self) -> float | None:
        return self._or_none(_ratio(self.tp, self.tp + self.fp))

    @property
    def recall(self) -> float | None:
        return self._or_none(_ratio(self.tp, self.tp + self.fn))

    @property
    def f1(self) -> float | None:
        """2PR / (P + R), written as 2 TP / (2 TP + FP + FN); 0 when TP = 0."""
        return self._or_none(_ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn))

    @property
    def ap_dsb(self) -> float | None:
        """TP / (TP + FP + FN): the "AP" of Cellpose, CellSeg1 and the Glioma paper (StarDist's accuracy)."""
        return self._or_none(_ratio(self.tp, self.tp + self.fp + self.fn))

    @property
    def pq(self) -> float | None:
        """Panoptic quality: summed matched IoU / (TP + FP/2 + FN/2)."""
        return self._or_none(_ratio(self.iou_sum, self.tp + 0.5 * self.fp + 0.5 * self.fn))

    @property
    def mean_matched_iou(self) -> float | None:
        """Mean IoU of the true-positive pairs (0 when there is none)."""
        return self._or_none(_ratio(self.iou_sum, self.tp))

    def to_dict(self) -> dict:
        return {
            "tp": int(self.tp),
            "fp": int(self.fp),
            "fn": int(self.fn),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "ap_dsb": self.ap_dsb,
            "pq": self.pq,
            "mean_matched_iou": self.mean_matched_iou,
        }


def match_pairs(ov: Overlaps, threshold: float) -> np.ndarray:
    """Positions (into the pair arrays of ``ov``) of the true positives of the optimal matching."""
    iou = ov.iou
    n_min = min(ov.n_gt, ov.n_pred)
    if n_min == 0 or iou.size == 0:
        return np.zeros(0, np.int64)
    hit = np.flatnonzero(iou >= threshold)
    gi, pj = ov.gt_index[hit], ov.pred_index[hit]
    conflict = (np.bincount(gi, minlength=ov.n_gt)[gi] > 1) | (np.bincount(pj, minlength=ov.n_pred)[pj] > 1)
    if not conflict.any():
        return hit
    # scipy is imported here, not at the top: most images never get this far, and importing
    # scipy.optimize costs about a third of a second of every `cellbench evaluate`.
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # Groups of touching instances (over all pairs with any overlap); nodes 0..n_gt-1 are GT.
    n = ov.n_gt + ov.n_pred
    graph = coo_matrix((np.ones(iou.size), (ov.gt_index, ov.pred_index + ov.n_gt)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    hard = np.zeros(group.max() + 1, dtype=bool)
    hard[group[gi[conflict]]] = True
    found = [hit[~hard[group[gi]]]]
    pair_group = group[ov.gt_index]
    order = np.argsort(pair_group, kind="stable")
    hard_ids = np.flatnonzero(hard)
    starts = np.searchsorted(pair_group[order], hard_ids, side="left")
    stops = np.searchsorted(pair_group[order], hard_ids, side="right")
    for lo, hi in zip(starts.tolist(), stops.tolist()):
        sel = order[lo:hi]
        rows, r_inv = np.unique(ov.gt_index[sel], return_inverse=True)
        cols, c_inv = np.unique(ov.pred_index[sel], return_inverse=True)
        sub = np.zeros((rows.size, cols.size))
        sub[r_inv, c_inv] = iou[sel]
        where = np.full((rows.size, cols.size), -1, dtype=np.int64)
        where[r_inv, c_inv] = sel
        r, c = linear_sum_assignment(-(sub >= threshold).astype(float) - sub / (2 * n_min))
        ok = sub[r, c] >= threshold
        found.append(where[r[ok], c[ok]])
    return np.sort(np.concatenate(found))


def match(ov: Overlaps, thresholds: Sequence[float]) -> list[Counts]:
    """Counts at each IoU threshold for one image.

    >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[1, 1, 1, 0, 0]])
    >>> [(c.tp, c.fp, c.fn) for c in match(overlaps_from_labels(gt, pred)[0], [0.5, 0.7])]
    [(1, 0, 1), (0, 1, 2)]
    """
    iou = ov.iou
    out = []
    for t in thresholds:
        pos = match_pairs(ov, t)
        tp = int(pos.size)
        out.append(Counts(tp=tp, fp=ov.n_pred - tp, fn=ov.n_gt - tp, iou_sum=float(iou[pos].sum())))
    return out


def match_labels(gt: np.ndarray, pred: np.ndarray, thresholds: Sequence[float]) -> list[Counts]:
    """Counts at each IoU threshold for two label images of one image (0 is background).

    The rule of :func:`match` (IoU >= t, optimal one-to-one), on the pixel-pair
    count of :func:`~cellbench.matching.overlap.overlaps_from_labels`: what
    methods tune on and what :mod:`cellbench.metrics` reports are the same numbers.

    >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[3, 0, 0, 4, 4]])
    >>> [(c.tp, c.fp, c.fn) for c in match_labels(gt, pred, [0.5, 0.7])]
    [(2, 0, 0), (1, 1, 1)]
    """
    return match(overlaps_from_labels(gt, pred)[0], thresholds)


def pooled(counts: Iterable[Counts]) -> Counts:
    """Counts summed over images (TP, FP, FN and matched IoU): the pooled aggregation.

    >>> pooled([Counts(1, 1, 1), Counts(2, 0, 0)]).f1
    0.75
    """
    total = Counts(0, 0, 0)
    for c in counts:
        total = total + c
    return total
