"""COCO run-length encoding of instances, through pycocotools.

COCO RLE runs over the image in column-major order. Encoding an instance only
touches the columns of its bounding box, so it costs O(height x bbox width),
not O(image area).
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils

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
    strip = np.zeros((h, x1 - x0), dtype=bool)
    strip[y0:y1] = instance.mask
    flat = strip.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    if flat[0]:
        runs.insert(0, 0)
    runs[0] += x0 * h
    tail = (w - x1) * h
    if tail:
        if len(runs) % 2 == 1:  # ends on a background run
            runs[-1] += tail
        else:
            runs.append(tail)
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_to_instance(rle: dict, **fields) -> Instance:
    """Decode a COCO RLE (compressed or not) into a bbox-cropped :class:`Instance`.

    Raises ``ValueError`` when the RLE covers no pixel.
    """
    h, w = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(rle["counts"], str):
        rle = {"size": [h, w], "counts": rle["counts"].encode("ascii")}
    x, y, bw, bh = (int(round(v)) for v in mask_utils.toBbox(rle))
    full = mask_utils.decode(rle)
    return Instance.from_mask(full[y : y + bh, x : x + bw], offset=(y, x), **fields)


def rle_area(rle: dict) -> int:
    """Pixel count of a compressed RLE as produced by :func:`instance_to_rle`."""
    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))
