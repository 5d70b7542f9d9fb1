"""COCO run-length encoding of instances, through pycocotools.

COCO RLE runs over the image in column-major order. Encoding an instance only
touches its bounding box, so it costs O(bbox area), not O(image area) (or
O(image height x bbox width)): 40,000 cells of a whole slide encode in seconds.
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils

from cellbench.errors import DataError
from cellbench.instances.instance import Instance

__all__ = ["instance_to_rle", "rle_to_instance", "rle_area"]


def instance_to_rle(instance: Instance, shape: tuple[int, int]) -> dict:
    """Compressed COCO RLE (``{"size": [h, w], "counts": str}``) of ``instance`` in an image of ``shape``.

    >>> inst = Instance(mask=np.ones((1, 2), bool), bbox=(1, 0, 2, 2))
    >>> rle = instance_to_rle(inst, (3, 2))
    >>> mask_utils.decode(rle).tolist()
    [[0, 0], [1, 1], [0, 0]]
    """
    h, w = shape
    y0, x0, y1, x1 = instance.bbox
    bh = y1 - y0
    # Column-major runs of the box, one extra background row under each column standing for the h - bh image
    # rows between the end of one column's box and the start of the next (so no full-height strip is built).
    local = np.zeros((bh + (bh < h), x1 - x0), dtype=bool)
    local[:bh] = instance.mask
    flat = local.ravel(order="F")
    bounds = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]))
    runs = np.diff(bounds)
    if bh < h:
        pads = np.arange(x1 - x0) * (bh + 1) + bh
        runs += np.bincount(np.searchsorted(bounds, pads, side="right") - 1, minlength=runs.size) * (h - bh - 1)
        runs[-1] -= y0  # the last column's extra row stands for the h - y1 rows under its box only
    runs = runs.tolist()
    if flat[0]:
        runs.insert(0, 0)
    runs[0] += x0 * h + y0
    tail = (w - x1) * h
    if tail:
        if len(runs) % 2 == 1:  # ends on a background run
            runs[-1] += tail
        else:
            runs.append(tail)
    if len(runs) > 1 and runs[-1] == 0:  # the box ends at the bottom-right corner: no background after it
        runs.pop()
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _runs(counts: bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string (the LEB128-like format of maskApi.c)."""
    runs: list[int] = []
    value = shift = 0
    for char in counts:
        c = char - 48
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value = shift = 0
    return runs


def rle_to_instance(rle: dict, **fields) -> Instance:
    """Decode a COCO RLE (compressed or not) into a bbox-cropped :class:`Instance`.

    Only the columns of the object's bounding box are expanded, never the
    whole image. Raises ``ValueError`` when the RLE covers no pixel, and
    :class:`~cellbench.errors.DataError` (a ``ValueError`` too) when its
    counts are malformed: not run lengths, negative, or more pixels than
    ``size`` holds (fewer is fine: the rest is background).

    >>> rle_to_instance({"size": [2, 2], "counts": [1, 2, 1]}).area
    2
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    try:
        if isinstance(counts, list):
            runs = [int(c) for c in counts]
        elif isinstance(counts, (str, bytes)):
            runs = _runs(counts.encode("ascii") if isinstance(counts, str) else counts)
        else:
            raise TypeError(f"got {type(counts).__name__}")
    except (TypeError, ValueError) as exc:  # ValueError covers a string that is not ASCII
        raise DataError(f"RLE counts must be run lengths or a compressed COCO string ({exc})") from None
    if runs and min(runs) < 0:
        raise DataError(f"RLE has a negative run length ({min(runs)})")
    if sum(runs) > h * w:
        raise DataError(f"RLE runs add up to {sum(runs)} pixels, more than its size {h} x {w} holds")
    # Foreground runs as (start, end) flat indices in column-major order; the bbox and the crop come from them,
    # so only the object's rows of its columns are ever allocated.
    fg: list[tuple[int, int]] = []
    start = 0
    for k, run in enumerate(runs):
        if k % 2 and run:
            fg.append((start, start + run))
        start += run
    if not fg:
        raise ValueError("RLE covers no pixel")
    x0, x1 = fg[0][0] // h, (fg[-1][1] - 1) // h + 1
    y0, y1 = h, 0
    for a, b in fg:
        if a // h != (b - 1) // h:  # the run goes on into the next column: it touches the top and bottom rows
            y0, y1 = 0, h
            break
        y0, y1 = min(y0, a % h), max(y1, (b - 1) % h + 1)
    columns = np.zeros((x1 - x0, y1 - y0), dtype=bool)  # one row per image column
    for a, b in fg:
        for col in range(a // h, (b - 1) // h + 1):
            top, bottom = max(a, col * h) - col * h, min(b, (col + 1) * h) - col * h
            columns[col - x0, top - y0:bottom - y0] = True
    return Instance(mask=columns.T, bbox=(y0, x0, y1, x1), **fields)


def rle_area(rle: dict) -> int:
    """Pixel count of a compressed RLE as produced by :func:`instance_to_rle`."""
    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))
