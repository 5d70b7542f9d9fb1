"""The NeurIPS-2022 boundary rule: instances touching the image frame are not scored.

The official challenge evaluation builds a frame ``px`` pixels wide (2 in the
challenge) on every side of the image and removes every instance with any
pixel in it, from the ground truth and from the prediction independently,
before matching. The Glioma C6 paper evaluates this way.
"""

from __future__ import annotations

import numpy as np

from cellbench.instances import Instance, InstanceSet

__all__ = ["touches_frame", "drop_boundary"]


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
