"""Overlaps of two label-image files counted a band of rows at a time (whole-slide images).

Two :class:`~cellbench.data.label_file.LabelFile` of one shape are read side
by side in bands (cut to common heights when their tiles differ), their pixel
pairs summed (:class:`~cellbench.matching.PixelPairCounts`) and the ids in
the boundary frame gathered on the way. The overlaps are exactly those of the
whole arrays (:func:`~cellbench.matching.overlaps_from_labels` after the
boundary rule), so every metric that reads overlaps scores the files as it
would score the arrays, an instance cut by band borders included; memory is a
band of each file and the distinct (GT, prediction) pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from cellbench.errors import DataError
from cellbench.matching import Overlaps, PixelPairCounts
from cellbench.metrics.boundary import frame_ids

if TYPE_CHECKING:  # the metrics import no reader: cellbench.data (Pillow, tifffile) loads where files are read
    from cellbench.data.label_file import LabelFile

__all__ = ["is_label_file", "label_file_overlaps"]


def is_label_file(x: Any) -> bool:
    """``x`` is read in bands (a :class:`~cellbench.data.label_file.LabelFile`, or anything with its
    ``shape``, ``bands()`` and ``read()``)."""
    return all(callable(getattr(x, a, None)) for a in ("bands", "read")) and hasattr(x, "shape")


def label_file_overlaps(gt: LabelFile, pred: LabelFile, *, boundary_px: int = 0, rows: int | None = None,
                        name: str = "image") -> Overlaps:
    """The overlaps of two label files, instances in the ``boundary_px`` frame left out (as the arrays' would be).

    >>> import tempfile, tifffile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> tifffile.imwrite(folder / "g.tif", np.array([[1, 1, 0], [0, 2, 2]], np.uint16))
    >>> tifffile.imwrite(folder / "p.tif", np.array([[3, 3, 3], [0, 0, 4]], np.uint16))
    >>> from cellbench.data.label_file import LabelFile
    >>> ov = label_file_overlaps(LabelFile.open(folder / "g.tif"), LabelFile.open(folder / "p.tif"), rows=1)
    >>> ov.gt_index, ov.pred_index, ov.intersection
    (array([0, 1]), array([0, 1]), array([2, 1]))
    """
    if gt.shape != pred.shape:
        raise DataError(f"image {name!r}: ground truth {gt.path} is {gt.shape} but prediction {pred.path} is "
                        f"{pred.shape}")
    height = gt.shape[0]
    counts = PixelPairCounts()
    edge_g: list[np.ndarray] = []
    edge_p: list[np.ndarray] = []
    y0 = 0
    bands = {} if rows is None else {"rows": rows}
    for g, p in _aligned(gt.bands(**bands), pred.bands(**bands)):
        counts.add(g, p)
        if boundary_px > 0:
            edge_g.append(frame_ids(g, y0, height, boundary_px))
            edge_p.append(frame_ids(p, y0, height, boundary_px))
        y0 += g.shape[0]
    drop_g = np.concatenate(edge_g).astype(np.int64) if edge_g else None
    drop_p = np.concatenate(edge_p).astype(np.int64) if edge_p else None
    return counts.overlaps(drop_gt=drop_g, drop_pred=drop_p)[0]


def _aligned(a: Iterator[np.ndarray], b: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Two streams of row bands cut to common heights: pieces of the same rows of both images."""
    a, b = iter(a), iter(b)
    left = right = None
    while True:
        if left is None or not len(left):
            left = next(a, None)
        if right is None or not len(right):
            right = next(b, None)
        if left is None or right is None:
            return
        n = min(len(left), len(right))
        yield left[:n], right[:n]
        left, right = left[n:], right[n:]
