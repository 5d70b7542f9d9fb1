"""Boundary F-score, BF (Csurka et al. 2013): how well outlines fall on outlines, within a distance tolerance.

Per image, the boundary of the ground truth is every pixel on the outline of
a GT instance (a pixel of its mask with a 4-neighbour outside it, or on the
image edge), each pixel counted once where outlines meet or overlapping
instances cross; the predicted boundary likewise. A predicted boundary pixel
is matched when a GT boundary pixel lies within ``tolerance`` px (Euclidean;
2 px by default), and a GT boundary pixel when a predicted one does:

    BF precision = matched predicted / predicted boundary pixels
    BF recall    = matched GT / GT boundary pixels
    BF           = 2 P R / (P + R)

No instance matching: outlines are compared as pixels, so a cell split in two
loses precision along the cut only. Pooled over images, the four counts are
summed; ``image_mean`` averages each image's BF.

>>> from cellbench.instances import InstanceSet
>>> gt = InstanceSet.from_label_image(np.pad(np.ones((6, 6), int), 2))
>>> pred = InstanceSet.from_label_image(np.pad(np.ones((6, 7), int), ((2, 2), (2, 1))))  # one column wider
>>> parts = boundary_parts(gt, pred, tolerance=0)
>>> (parts.pred_matched, parts.pred, parts.gt_matched, parts.gt)
(16, 22, 16, 20)
>>> boundary_parts(gt, pred, tolerance=1).to_dict()["bf"]
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellbench.instances import InstanceSet
from cellbench.metrics.base import ImagePair, Metric

__all__ = ["BoundaryF", "BoundaryParts", "boundary_parts"]


@dataclass(frozen=True)
class BoundaryParts:
    """Matched and total boundary pixels of the prediction and the ground truth (one image, or summed)."""

    pred_matched: int
    pred: int
    gt_matched: int
    gt: int

    def __add__(self, other: BoundaryParts) -> BoundaryParts:
        return BoundaryParts(self.pred_matched + other.pred_matched, self.pred + other.pred,
                             self.gt_matched + other.gt_matched, self.gt + other.gt)

    def to_dict(self) -> dict:
        """BF precision and recall (None without boundary pixels on that side), and BF (None when both are)."""
        p = self.pred_matched / self.pred if self.pred else None
        r = self.gt_matched / self.gt if self.gt else None
        if p is None and r is None:
            f = None
        elif p is None or r is None or p + r == 0:
            f = 0.0
        else:
            f = 2 * p * r / (p + r)
        return {"bf_precision": p, "bf_recall": r, "bf": f}


def _outline(instances: InstanceSet, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """The union of the instances' outlines, in a frame of ``shape`` at ``origin`` of the image."""
    from scipy import ndimage  # here: scipy.ndimage takes ~0.3 s to import, and only this metric needs it

    out = np.zeros(shape, dtype=bool)
    for inst in instances:
        y0, x0, y1, x1 = inst.bbox
        edge = inst.mask & ~ndimage.binary_erosion(inst.mask, border_value=0)  # outside the box is outside
        out[y0 - origin[0] : y1 - origin[0], x0 - origin[1] : x1 - origin[1]] |= edge
    return out


def boundary_parts(gt: InstanceSet, pred: InstanceSet, *, tolerance: float = 2.0) -> BoundaryParts:
    """The boundary pixel counts of one image (see the module)."""
    boxes = [i.bbox for i in (*gt, *pred)]
    if not boxes:
        return BoundaryParts(0, 0, 0, 0)
    b = np.array(boxes)
    margin = int(np.ceil(tolerance)) + 1
    y0, x0 = max(0, b[:, 0].min() - margin), max(0, b[:, 1].min() - margin)
    y1, x1 = b[:, 2].max() + margin, b[:, 3].max() + margin
    shape = (y1 - y0, x1 - x0)
    g, p = _outline(gt, (y0, x0), shape), _outline(pred, (y0, x0), shape)
    n_g, n_p = int(np.count_nonzero(g)), int(np.count_nonzero(p))
    if not n_g or not n_p:
        return BoundaryParts(0, n_p, 0, n_g)
    from scipy import ndimage

    near_g = ndimage.distance_transform_edt(~g) <= tolerance
    near_p = ndimage.distance_transform_edt(~p) <= tolerance
    return BoundaryParts(int(np.count_nonzero(p & near_g)), n_p, int(np.count_nonzero(g & near_p)), n_g)


@dataclass(frozen=True)
class BoundaryF(Metric):
    """Boundary F-score of one image's instance outlines, within ``tolerance`` px."""

    tolerance: float = 2.0

    name = "bf"
    title = "Boundary F-score (Csurka et al. 2013, BF)"
    convention = ("no matching: outline pixels of all GT instances against those of all predicted instances, "
                  "matched within a distance tolerance (2 px)")
    needs_instances = True
    averaged = ("bf",)
    spread = ("bf",)
    zero = BoundaryParts(0, 0, 0, 0)

    def image(self, pair: ImagePair) -> BoundaryParts:
        return boundary_parts(pair.gt, pair.pred, tolerance=self.tolerance)
