"""Aggregated Jaccard Index, AJI (Kumar et al. 2017, MoNuSeg) and AJI+ (Graham et al. 2019, HoVer-Net).

Both add up, over an image, the intersections C and the unions U of paired GT
and predicted instances, plus the area of every instance left unpaired to U;
the index is C / U. They differ in the pairing, each exactly as HoVer-Net's
``get_fast_aji`` and ``get_fast_aji_plus`` (``metrics/stats_utils.py``):

* **AJI**: every GT instance that touches a prediction takes the prediction
  of highest IoU; a prediction may serve several GT instances (its area then
  counts in several unions: the over-penalisation AJI+ removes). A
  prediction no GT chose is unpaired.
* **AJI+**: one-to-one pairs of maximal summed IoU (Hungarian, over the
  touching pairs; :func:`cellbench.matching.assign`, group by group).

HoVer-Net ranks pairs by ``inter / (union + 1e-6)``, not by the IoU itself:
so two candidates of equal IoU are not tied, the larger pair wins (then, for
AJI, the first prediction, as ``numpy.argmax``). cellbench ranks the same way;
C and U are whole pixel counts, so the index equals HoVer-Net's to the last
bit. Where two AJI+ pairings tie on summed IoU exactly, the one chosen may
differ from HoVer-Net's (scipy solves one matrix there, here one per group);
the index can then differ. An image with no GT and no prediction has no index
(None; HoVer-Net divides 0 by 0); GT without any prediction gives 0
(HoVer-Net's ``argmax`` fails there). Pooled over images, the index is the
summed C over the summed U.

cellseg-metrics 0.2.0's ``aggregated_jaccard_index`` is another pairing
(each GT with the prediction of largest *intersection*, every tied one), so
it is not HoVer-Net's AJI; the tests compare against a transcription of
HoVer-Net's two functions.

>>> from cellbench.matching import overlaps_from_labels
>>> gt = np.array([[1, 1, 1, 1, 2, 2]])
>>> pred = np.array([[1, 1, 1, 1, 1, 1]])  # one prediction over both GT cells
>>> ov = overlaps_from_labels(gt, pred)[0]
>>> aji_parts(ov), aji_plus_parts(ov)  # AJI: C = 4 + 2 over U = 6 + 6; AJI+: C = 4 over U = 6 + 2
(JaccardParts(intersection=6, union=12), JaccardParts(intersection=4, union=8))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellbench.matching import Overlaps, assign
from cellbench.metrics.base import ImagePair, Metric

__all__ = ["AggregatedJaccard", "AggregatedJaccardPlus", "JaccardParts", "aji_pairs", "aji_parts", "aji_plus_parts"]

#: HoVer-Net's offset in the IoU that ranks candidate pairs (it breaks IoU ties towards the larger pair).
HOVERNET_EPS = 1.0e-6


@dataclass(frozen=True)
class JaccardParts:
    """Summed intersections and unions (unpaired areas included) of one image, or of images summed."""

    intersection: int
    union: int

    def __add__(self, other: JaccardParts) -> JaccardParts:
        return JaccardParts(self.intersection + other.intersection, self.union + other.union)

    @property
    def index(self) -> float | None:
        """C / U; None when there is nothing on either side."""
        return self.intersection / self.union if self.union else None


def _ranking_iou(ov: Overlaps) -> np.ndarray:
    inter = ov.intersection.astype(np.float64)
    union = (ov.gt_area[ov.gt_index] + ov.pred_area[ov.pred_index] - ov.intersection).astype(np.float64)
    return inter / (union + HOVERNET_EPS)


def _parts(ov: Overlaps, pos: np.ndarray) -> JaccardParts:
    """C and U when the pairs at ``pos`` are paired (a prediction may appear in several)."""
    gi, pj, inter = ov.gt_index[pos], ov.pred_index[pos], ov.intersection[pos]
    union = int((ov.gt_area[gi] + ov.pred_area[pj] - inter).sum())
    gt_free = np.ones(ov.n_gt, bool)
    gt_free[gi] = False
    pred_free = np.ones(ov.n_pred, bool)
    pred_free[pj] = False
    union += int(ov.gt_area[gt_free].sum()) + int(ov.pred_area[pred_free].sum())
    return JaccardParts(int(inter.sum()), union)


def aji_pairs(ov: Overlaps) -> np.ndarray:
    """Positions (into the pair arrays of ``ov``) of each touching GT instance's pair of highest ranking IoU."""
    if ov.gt_index.size == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((ov.pred_index, -_ranking_iou(ov), ov.gt_index))
    g = ov.gt_index[order]
    first = np.ones(order.size, bool)
    first[1:] = g[1:] != g[:-1]
    return np.sort(order[first])


def aji_parts(ov: Overlaps) -> JaccardParts:
    """C and U of AJI (HoVer-Net ``get_fast_aji``) for one image."""
    return _parts(ov, aji_pairs(ov))


def aji_plus_parts(ov: Overlaps) -> JaccardParts:
    """C and U of AJI+ (HoVer-Net ``get_fast_aji_plus``) for one image."""
    touching = np.ones(ov.gt_index.size, bool)
    return _parts(ov, assign(ov, touching, _ranking_iou(ov), lambda w, hit: -w))


class AggregatedJaccard(Metric):
    """AJI of one image (and summed C over summed U, pooled)."""

    name = "aji"
    title = "AJI, Aggregated Jaccard Index (Kumar et al. 2017, MoNuSeg; HoVer-Net get_fast_aji)"
    convention = ("each GT instance paired with its prediction of highest IoU (a prediction may serve several GT; "
                  "IoU ranked as HoVer-Net: inter / (union + 1e-6), then the first prediction); unpaired GT and "
                  "predictions add their area to the union")
    averaged = ("aji",)
    spread = ("aji",)
    zero = JaccardParts(0, 0)

    def image(self, pair: ImagePair) -> JaccardParts:
        return aji_parts(pair.overlaps)

    def values(self, part: JaccardParts) -> dict:
        return {self.name: part.index}


class AggregatedJaccardPlus(AggregatedJaccard):
    """AJI+ of one image (and summed C over summed U, pooled)."""

    name = "aji_plus"
    title = "AJI+ (Graham et al. 2019, HoVer-Net get_fast_aji_plus)"
    convention = ("one-to-one pairs of maximal summed IoU (Hungarian over the touching pairs, IoU as HoVer-Net: "
                  "inter / (union + 1e-6)); unpaired GT and predictions add their area to the union")
    averaged = ("aji_plus",)
    spread = ("aji_plus",)

    def image(self, pair: ImagePair) -> JaccardParts:
        return aji_plus_parts(pair.overlaps)
