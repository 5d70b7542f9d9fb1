"""nnU-Net's semantic output turned into cell instances.

``boundary`` target (background / interior / boundary): each connected
component of the interior class is a cell's seed; seeds grow by a watershed
on the interior probability into the pixels nnU-Net calls cell (interior or
boundary), so touching cells split along their boundary pixels.
``foreground`` target: connected components of the cell class (touching cells
merge: that is what a foreground-only target can give).

Components smaller than ``min_size`` pixels are dropped. An instance's score
is the mean probability of "cell" (interior + boundary) over its pixels, so
COCO metrics can rank the instances.
"""

from __future__ import annotations

import numpy as np

from cellbench.instances import InstanceSet

__all__ = ["instances_from_semantic"]


def instances_from_semantic(probabilities: np.ndarray, target: str, *, min_size: int = 0) -> InstanceSet:
    """Instances from nnU-Net class probabilities (classes x H x W).

    >>> p = np.zeros((3, 6, 6)); p[0] = 1
    >>> p[:, 1:5, 1:5] = np.array([0.0, 0.1, 0.9])[:, None, None]   # a cell's boundary ...
    >>> p[:, 2:4, 2:4] = np.array([0.0, 0.9, 0.1])[:, None, None]   # ... around its interior
    >>> found = instances_from_semantic(p, "boundary")
    >>> len(found), found[0].area, round(found[0].score, 2)
    (1, 16, 1.0)
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    probabilities = np.asarray(probabilities, dtype=np.float32)
    classes = probabilities.argmax(axis=0)
    cell_prob = 1.0 - probabilities[0]
    cells = classes > 0
    if target == "boundary":
        seeds, _ = ndimage.label(classes == 1)
        labels = watershed(-probabilities[1], seeds, mask=cells)
    else:
        labels, _ = ndimage.label(cells)
    if min_size > 0 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
    found = InstanceSet.from_label_image(labels.astype(np.int32))
    scored = tuple(i.replace(score=float(cell_prob[i.slices][i.mask].mean())) for i in found)
    return found.replace(instances=scored)
