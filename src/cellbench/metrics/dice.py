"""Pixel Dice of the binary foregrounds: 2 |G ∩ P| / (|G| + |P|), no instance matching.

G is every pixel of any GT instance and P every pixel of any predicted
instance, each pixel counted once where instances overlap (the NeurIPS-2022
report's "Dice"). Per image only: the report averages it over images and
does not pool it.

>>> from cellbench.matching import overlaps_from_labels
>>> ov = overlaps_from_labels(np.array([[1, 1, 0, 2]]), np.array([[1, 1, 1, 0]]))[0]
>>> PixelDice().image(ImagePair("a", (0.5,), ov)).dice
0.6666666666666666
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellbench.instances import InstanceSet
from cellbench.metrics.base import ImagePair, Metric

__all__ = ["DiceParts", "PixelDice", "foreground_counts"]


@dataclass(frozen=True)
class DiceParts:
    """Shared foreground pixels and the two foreground areas of an image (or of images summed)."""

    intersection: int
    gt: int
    pred: int

    def __add__(self, other: DiceParts) -> DiceParts:
        return DiceParts(self.intersection + other.intersection, self.gt + other.gt, self.pred + other.pred)

    @property
    def dice(self) -> float | None:
        """None when neither side has a foreground pixel."""
        return 2.0 * self.intersection / (self.gt + self.pred) if self.gt + self.pred else None

    def to_dict(self) -> dict:
        return {"dice": self.dice}


def foreground_counts(gt: InstanceSet, pred: InstanceSet) -> DiceParts:
    """Shared foreground pixels and both foreground areas, each pixel counted once (overlaps too)."""
    boxes = [i.bbox for i in (*gt, *pred)]
    if not boxes:
        return DiceParts(0, 0, 0)
    b = np.array(boxes)
    y0, x0 = b[:, 0].min(), b[:, 1].min()
    shape = (b[:, 2].max() - y0, b[:, 3].max() - x0)
    fg = []
    for s in (gt, pred):
        m = np.zeros(shape, dtype=bool)
        for inst in s:
            iy0, ix0, iy1, ix1 = inst.bbox
            m[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] |= inst.mask
        fg.append(m)
    return DiceParts(int(np.count_nonzero(fg[0] & fg[1])), int(np.count_nonzero(fg[0])), int(np.count_nonzero(fg[1])))


class PixelDice(Metric):
    """Pixel Dice of one image's binary foregrounds."""

    name = "dice"
    title = "Dice (pixel Dice of the binary foreground)"
    convention = "no matching: all GT pixels against all predicted pixels, each pixel counted once"
    pooled = False
    averaged = ("dice",)
    spread = ("dice",)
    zero = DiceParts(0, 0, 0)

    def image(self, pair: ImagePair) -> DiceParts:
        if pair.gt is None:  # two label images: no instance overlaps itself, so the overlaps hold the areas
            ov = pair.overlaps
            return DiceParts(int(ov.intersection.sum()), int(ov.gt_area.sum()), int(ov.pred_area.sum()))
        return foreground_counts(pair.gt, pair.pred)
