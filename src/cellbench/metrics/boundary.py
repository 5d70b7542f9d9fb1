"""The NeurIPS-2022 boundary rule: instances touching the image frame are not scored.

The official challenge evaluation builds a frame ``px`` pixels wide (2 in the
challenge) on every side of the image and removes every instance with any
pixel in it, from the ground truth and from the prediction independently,
before matching. The Glioma C6 paper evaluates this way.
"""

from __future__ import annotations

import numpy as np

from cellbench.instances import Instance, InstanceSet

__all__ = ["drop_boundary", "drop_boundary_labels", "frame_ids", "touches_frame"]


def touches_frame(inst: Instance, shape: tuple[int, int], px: int) -> bool:
    """Whether any pixel of ``inst`` lies within ``px`` pixels of the image edge.

    >>> inst = Instance.from_mask(np.ones((2, 2), bool), offset=(3, 1))
    >>> touches_frame(inst, (10, 10), 2), touches_frame(inst, (10, 10), 1)
    (True, False)
    """
    if px <= 0:
        return False
    h, w = shape
    y0, x0, y1, x1 = inst.bbox
    m = inst.mask
    return bool(
        (y0 < px and m[: px - y0].any())
        or (x0 < px and m[:, : px - x0].any())
        or (y1 > h - px and m[max(h - px - y0, 0) :].any())
        or (x1 > w - px and m[:, max(w - px - x0, 0) :].any())
    )


def drop_boundary(instances: InstanceSet, px: int = 2) -> InstanceSet:
    """The instances with no pixel in the ``px``-wide image frame (``px`` = 0 keeps all)."""
    if px <= 0:
        return instances
    kept = tuple(i for i in instances if not touches_frame(i, instances.shape, px))
    return instances.replace(instances=kept)


def frame_ids(band: np.ndarray, y0: int, height: int, px: int) -> np.ndarray:
    """The non-zero ids of a band of label rows (rows ``y0`` on of an image ``height`` rows high) with a pixel
    in the ``px``-wide frame: the band's part of the top and bottom strips and its left and right columns.

    >>> frame_ids(np.array([[0, 0, 0, 0], [0, 5, 6, 7]]), 3, 5, 1)  # rows 3-4 of 5: row 4 is in the frame
    array([5, 6, 7])
    """
    if px <= 0:
        return np.zeros(0, band.dtype)
    top = band[: max(0, px - y0)]
    bottom = band[max(0, height - px - y0) :]
    frame = np.concatenate([top.ravel(), bottom.ravel(), band[:, :px].ravel(), band[:, -px:].ravel()])
    ids = np.unique(frame)
    return ids[ids != 0]


def drop_boundary_labels(labels: np.ndarray, px: int) -> np.ndarray:
    """Label image with every instance touching the ``px``-wide frame set to 0 (the label twin of
    :func:`drop_boundary`)."""
    if px <= 0 or labels.dtype.kind not in "iu":  # non-integer labels are refused by overlaps_from_labels
        return labels
    touching = frame_ids(labels, 0, labels.shape[0], px)
    if touching.size == 0:
        return labels
    return np.where(np.isin(labels, touching), 0, labels)
