"""Training targets of the semantic methods, computed from a flattened label image.

* :func:`three_class_map`: background 0 / interior 1 / boundary 2, the
  FeatureNet-style classes of the 18-methods paper as the NeurIPS-2022
  baseline (``pre_process_3class.py``) and the saltfish team compute them: the
  inner boundary of every cell, dilated; interior = cell minus boundary, with
  interior pieces under 16 px dropped (they become background, as in both
  reference scripts).
* :func:`center_weight_map`: the saltfish team's regression target, a
  distance-like map that is 1 at the most interior pixel of every cell and
  falls towards its edge at a rate set by the cell's size, 0 outside cells.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import disk
from skimage.segmentation import find_boundaries

__all__ = ["BACKGROUND", "BOUNDARY", "INTERIOR", "center_weight_map", "drop_small", "three_class_map"]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
_MIN_INTERIOR = 16  # px; both reference scripts drop smaller interior pieces


def drop_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without its connected pieces (4-connected, as scikit-image's
    ``remove_small_objects``) under ``min_size`` px.

    >>> drop_small(np.array([[1, 1, 0, 1]], bool), 2).tolist()
    [[True, True, False, False]]
    """
    pieces, n = ndimage.label(mask)
    if n == 0 or min_size <= 1:
        return mask.astype(bool)
    big = np.bincount(pieces.ravel()) >= min_size
    big[0] = False
    return big[pieces]


def _boundary_widths(labels: np.ndarray, width: Literal["fixed", "scaled"]) -> np.ndarray:
    """Dilation radius per label id (index = id): 1 px, or ceil(sqrt(area) / 40) (saltfish)."""
    areas = np.bincount(labels.ravel())
    if width == "fixed":
        return np.ones(areas.shape, dtype=np.int64)
    return np.maximum(1, np.ceil(np.sqrt(areas) / 40.0)).astype(np.int64)


def three_class_map(labels: np.ndarray, *, width: Literal["fixed", "scaled"] = "fixed") -> np.ndarray:
    """Background / interior / boundary map (uint8 0 / 1 / 2) of a label image.

    ``width="fixed"`` dilates the inner boundaries by a disk of radius 1 (the
    NeurIPS-2022 baseline); ``"scaled"`` by ``ceil(sqrt(area) / 40)`` per cell
    (saltfish: wider boundaries for larger cells). A dilated boundary may
    spill past its cell, as in both references.

    >>> lab = np.zeros((13, 13), np.int32); lab[1:12, 1:12] = 1
    >>> m = three_class_map(lab)
    >>> int((m == INTERIOR).sum()), int(m[1, 1]), int(m[6, 6])
    (49, 2, 1)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer image, got {labels.dtype} {labels.shape}")
    out = np.zeros(labels.shape, dtype=np.uint8)
    if not labels.any():
        return out
    inner = find_boundaries(labels, mode="inner")
    widths = _boundary_widths(labels, width)
    boundary = np.zeros(labels.shape, dtype=bool)
    for radius in np.unique(widths[labels[inner]]):
        edge = inner & (widths[labels] == radius)
        boundary |= ndimage.binary_dilation(edge, structure=disk(int(radius)))
    interior = drop_small((labels > 0) & ~boundary, _MIN_INTERIOR)
    out[interior] = INTERIOR
    out[boundary] = BOUNDARY
    return out


def center_weight_map(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """saltfish's distance target: per cell ``1 / (1 + (max d - d) / sqrt(area))``, 0 outside cells.

    ``d`` is the Euclidean distance transform of the interior class of
    ``classes`` (:func:`three_class_map`), so it is 0 on the boundary class;
    ``max d`` and ``area`` are taken per cell of ``labels``. Every cell's most
    interior pixel gets 1 whatever the cell's size, which is what lets the
    post-processing use one relative threshold for small and large cells.

    >>> lab = np.zeros((11, 11), np.int32); lab[1:10, 1:10] = 1
    >>> w = center_weight_map(lab, three_class_map(lab))
    >>> float(w[5, 5]), float(w[0, 0]), bool(0 < w[1, 1] < 1)
    (1.0, 0.0, True)
    """
    labels = np.asarray(labels)
    dist = ndimage.distance_transform_edt(classes == INTERIOR).astype(np.float32)
    out = np.zeros(labels.shape, dtype=np.float32)
    inside = labels > 0
    if not inside.any():
        return out
    n = int(labels.max())
    peak = np.zeros(n + 1, dtype=np.float32)
    peak[1:] = ndimage.maximum(dist, labels=labels, index=np.arange(1, n + 1))
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float32)
    ids = labels[inside]
    out[inside] = 1.0 / (1.0 + (peak[ids] - dist[inside]) / np.sqrt(np.maximum(area[ids], 1.0)))
    return out
