"""Panoptic quality as its paper and HoVer-Net define it: pairs with IoU > 0.5, PQ = DQ x SQ.

Kirillov et al. (2019) count a pair as a match when its IoU is strictly above
0.5; with no instance overlapping another on its own side such pairs are
unique, so no assignment is needed (HoVer-Net's ``get_fast_pq`` at
``match_iou=0.5``, cellseg-metrics' ``panoptic_quality``). DQ = TP / (TP +
FP/2 + FN/2), SQ = mean IoU of the matches, PQ = DQ x SQ = summed matched IoU
/ (TP + FP/2 + FN/2). Where one side overlaps itself (Glioma C6 ground
truth) a prediction can pass 0.5 with two GT cells; the pairs are then the
optimal one-to-one matching among those above 0.5.

cellbench's ``pq`` of :mod:`cellbench.metrics.matched_counts` counts IoU >=
t instead, so at t = 0.5 the two differ by the pairs of IoU exactly 0.5.
HoVer-Net and cellseg-metrics add 1e-6 / 1e-8 to denominators; cellbench
divides exactly (its numbers differ from theirs by about 1e-8 relative, its
counts not at all). No GT and no prediction gives None (undefined).

>>> from cellbench.matching import overlaps_from_labels
>>> ov = overlaps_from_labels(np.array([[1, 1, 0, 0]]), np.array([[1, 1, 1, 1]]))[0]  # IoU exactly 0.5
>>> c = CanonicalPQ().image(ImagePair("a", (0.5,), ov))
>>> c.tp, CanonicalPQ().values(c)["pq_canonical"]
(0, 0.0)
"""

from __future__ import annotations

import numpy as np

from cellbench.matching import Counts, counts_of, match_pairs
from cellbench.metrics.base import ImagePair, Metric

__all__ = ["CanonicalPQ"]


class CanonicalPQ(Metric):
    """Canonical PQ, DQ and SQ of one image (summed counts and matched IoU, pooled)."""

    name = "pq_canonical"
    title = "PQ = DQ x SQ, panoptic quality (Kirillov et al. 2019; HoVer-Net get_fast_pq)"
    convention = ("a pair matches when IoU > 0.5 (strictly); such pairs are unique unless a side overlaps itself, "
                  "then optimal one-to-one among them")
    averaged = ("pq_canonical", "dq_canonical", "sq_canonical")
    spread = ("pq_canonical",)
    zero = Counts(0, 0, 0)

    def image(self, pair: ImagePair) -> Counts:
        return counts_of(pair.overlaps, match_pairs(pair.overlaps, 0.5, strict=True))

    def values(self, part: Counts) -> dict:
        return {"pq_canonical": part.pq, "dq_canonical": part.f1, "sq_canonical": part.mean_matched_iou}
