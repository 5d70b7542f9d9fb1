"""TP, FP and FN at each IoU threshold, and their ratios: precision, recall, F1, ap_dsb, PQ, mean matched IoU.

The counts of the one matching rule of :mod:`cellbench.matching` (optimal
one-to-one, TP when IoU >= t, as StarDist, Cellpose and the NeurIPS-2022
challenge): the figures of the Glioma C6 paper's tables and of the NeurIPS
report. ``ap_dsb`` = TP / (TP + FP + FN) is the "AP" of Cellpose, CellSeg1 and
the Glioma C6 paper (StarDist's ``accuracy``), not COCO AP. ``pq`` here is
summed matched IoU / (TP + FP/2 + FN/2) at this matching, so at t = 0.5 it
counts a pair of IoU exactly 0.5; the canonical PQ (IoU > 0.5) is
:mod:`cellbench.metrics.panoptic`. The evaluator always scores this family:
``n_images`` and every pooled count rest on it.

>>> from cellbench.matching import overlaps_from_labels
>>> ov = overlaps_from_labels(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 0, 0]]))[0]
>>> (c,) = MatchedCounts().image(ImagePair("a", (0.5,), ov))
>>> c.tp, c.fn, MatchedCounts().values(c)["f1"]
(1, 1, 0.6666666666666666)
"""

from __future__ import annotations

import numpy as np

from cellbench.matching import COUNT_RATIOS, Counts, match
from cellbench.metrics.base import ImagePair, Metric

__all__ = ["MatchedCounts"]


class MatchedCounts(Metric):
    """Counts and ratios at every IoU threshold of the evaluation (one :class:`~cellbench.matching.Counts` each)."""

    name = "matching"
    title = "Precision, recall, F1, AP (ap_dsb = TP / (TP + FP + FN)), PQ and mean matched IoU at IoU t"
    convention = "optimal one-to-one (Hungarian), cost -(iou>=t) - iou/(2*n_min); TP when IoU >= t"
    per_threshold = True
    averaged = ("precision", "recall", "f1", "ap_dsb", "pq", "mean_matched_iou")
    spread = ("precision", "recall", "f1", "ap_dsb")
    ratios = COUNT_RATIOS
    zero = Counts(0, 0, 0)

    def image(self, pair: ImagePair) -> tuple[Counts, ...]:
        return tuple(match(pair.overlaps, pair.thresholds))
