"""Optimal one-to-one matching at IoU thresholds, and the counts it gives.

The assignment is the one of StarDist, Cellpose and the NeurIPS-2022 challenge:
Hungarian matching with cost ``-(iou >= t) - iou / (2 * n_min)`` where
``n_min = min(n_gt, n_pred)``, so the number of pairs with IoU >= t is
maximised first and their summed IoU second. A pair is a true positive when its
IoU is >= t.

The matrix is never built densely: the optimum splits over connected groups
of touching instances (:func:`cellbench.matching.assignment.assign`); at
t >= 0.5 on non-overlapping instances every group holds at most one candidate
pair and no assignment is run at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cellbench.matching.assignment import assign
from cellbench.matching.overlap import Overlaps, overlaps_from_labels

__all__ = ["COUNT_RATIOS", "Counts", "counts_of", "match", "match_labels", "match_pairs", "pooled"]

#: The ratios of TP, FP and FN as (numerator, denominator) weights of (TP, FP, FN), defined once for
#: :class:`Counts` and for whatever recomputes them from summed counts (the bootstrap of
#: :mod:`cellbench.analysis.certainty`).
COUNT_RATIOS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "precision": ((1, 0, 0), (1, 1, 0)),
    "recall": ((1, 0, 0), (1, 0, 1)),
    "f1": ((2, 0, 0), (2, 1, 1)),
    "ap_dsb": ((1, 0, 0), (1, 1, 1)),
}


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

    def count_ratio(self, name: str) -> float | None:
        """One of :data:`COUNT_RATIOS`; 0 for a zero denominator."""
        num, den = COUNT_RATIOS[name]
        c = (self.tp, self.fp, self.fn)
        return self._or_none(_ratio(sum(w * v for w, v in zip(num, c)), sum(w * v for w, v in zip(den, c))))

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP)."""
        return self.count_ratio("precision")

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN)."""
        return self.count_ratio("recall")

    @property
    def f1(self) -> float | None:
        """2PR / (P + R), written as 2 TP / (2 TP + FP + FN); 0 when TP = 0."""
        return self.count_ratio("f1")

    @property
    def ap_dsb(self) -> float | None:
        """TP / (TP + FP + FN): the "AP" of Cellpose, CellSeg1 and the Glioma paper (StarDist's accuracy)."""
        return self.count_ratio("ap_dsb")

    @property
    def pq(self) -> float | None:
        """Panoptic quality of this matching (IoU >= t): summed matched IoU / (TP + FP/2 + FN/2).

        At t = 0.5 it counts a pair of IoU exactly 0.5, which the canonical PQ (IoU > 0.5,
        :mod:`cellbench.metrics.panoptic`) does not.
        """
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


def match_pairs(ov: Overlaps, threshold: float, *, strict: bool = False) -> np.ndarray:
    """Positions (into the pair arrays of ``ov``) of the true positives of the optimal matching.

    A pair qualifies when its IoU is >= ``threshold`` (cellbench, StarDist, Cellpose), or > ``threshold``
    with ``strict`` (panoptic quality as Kirillov et al. and HoVer-Net define it).

    >>> ov = overlaps_from_labels(np.array([[1, 1, 0, 0]]), np.array([[1, 1, 1, 1]]))[0]
    >>> match_pairs(ov, 0.5), match_pairs(ov, 0.5, strict=True)
    (array([0]), array([], dtype=int64))
    """
    iou = ov.iou
    n_min = min(ov.n_gt, ov.n_pred)
    if n_min == 0 or iou.size == 0:
        return np.zeros(0, np.int64)
    candidate = iou > threshold if strict else iou >= threshold
    return assign(ov, candidate, iou, lambda w, hit: -hit.astype(float) - w / (2 * n_min))


def match(ov: Overlaps, thresholds: Sequence[float]) -> list[Counts]:
    """Counts at each IoU threshold for one image.

    >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[1, 1, 1, 0, 0]])
    >>> [(c.tp, c.fp, c.fn) for c in match(overlaps_from_labels(gt, pred)[0], [0.5, 0.7])]
    [(1, 0, 1), (0, 1, 2)]
    """
    return [counts_of(ov, match_pairs(ov, t)) for t in thresholds]


def counts_of(ov: Overlaps, pos: np.ndarray) -> Counts:
    """The counts of one image when the pairs at ``pos`` (into the pair arrays of ``ov``) are its true positives."""
    tp = int(pos.size)
    return Counts(tp=tp, fp=ov.n_pred - tp, fn=ov.n_gt - tp, iou_sum=float(ov.iou[pos].sum()))


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
