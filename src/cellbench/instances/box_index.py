"""Which instances' boxes meet a given box: a grid of buckets, so whole-slide sets stay linear.

Stitching tiles, flattening a window of a label image and finding overlapping
instances all ask "which instances could share a pixel with this one?". With
40,000 cells on a 20,000 x 20,000 slide, comparing every box with every other
is 1.6 billion comparisons; a :class:`BoxIndex` files each box under the grid
squares it covers, so a query looks only at the instances near it.

>>> index = BoxIndex([(0, 0, 10, 10), (5, 5, 20, 20), (100, 100, 110, 110)], cell=16)
>>> index.query((8, 8, 12, 12)).tolist()
[0, 1]
>>> index.add((0, 95, 10, 105))
3
>>> index.query((0, 90, 5, 100)).tolist()
[3]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

__all__ = ["BoxIndex"]

BBox = tuple[int, int, int, int]  # (y0, x0, y1, x1), as cellbench.instances.BBox

#: Grid square side in pixels: a few cell diameters, so most boxes fall in one to four squares.
DEFAULT_CELL = 256


class BoxIndex:
    """Boxes ``(y0, x0, y1, x1)`` (half open), numbered in the order added; :meth:`query` finds those meeting a box.

    A box can grow (:meth:`update`, as when two pieces of a cell are joined); it
    stays filed under the squares it covered before, which :meth:`query` filters
    out by the box itself.
    """

    def __init__(self, boxes: Iterable[BBox] = (), *, cell: int = DEFAULT_CELL) -> None:
        if cell < 1:
            raise ValueError(f"cell must be at least 1 px, got {cell}")
        self.cell = int(cell)
        self._buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self._boxes: list[BBox] = []
        for box in boxes:
            self.add(box)

    def __len__(self) -> int:
        return len(self._boxes)

    def box(self, k: int) -> BBox:
        return self._boxes[k]

    def add(self, box: BBox) -> int:
        """File ``box``; its number."""
        k = len(self._boxes)
        self._boxes.append(tuple(int(v) for v in box))
        self._file(k, box)
        return k

    def update(self, k: int, box: BBox) -> None:
        """Box ``k`` is now ``box`` (it may have grown)."""
        self._boxes[k] = tuple(int(v) for v in box)
        self._file(k, box)

    def query(self, box: BBox) -> np.ndarray:
        """Numbers of the boxes sharing at least one pixel with ``box``, ascending."""
        y0, x0, y1, x1 = box
        if y0 >= y1 or x0 >= x1:
            return np.zeros(0, dtype=np.int64)
        found: set[int] = set()
        for key in self._squares(box):
            found.update(self._buckets.get(key, ()))
        hits = [k for k in found if _meet(self._boxes[k], box)]
        return np.array(sorted(hits), dtype=np.int64)

    def _file(self, k: int, box: BBox) -> None:
        for key in self._squares(box):
            bucket = self._buckets[key]
            if not bucket or bucket[-1] != k:
                bucket.append(k)

    def _squares(self, box: BBox) -> Iterable[tuple[int, int]]:
        y0, x0, y1, x1 = box
        c = self.cell
        for gy in range(y0 // c, (max(y1, y0 + 1) - 1) // c + 1):
            for gx in range(x0 // c, (max(x1, x0 + 1) - 1) // c + 1):
                yield gy, gx


def _meet(a: BBox, b: BBox) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
