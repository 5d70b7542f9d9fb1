"""DeepCell's training targets, loss and ``deep_watershed``, rewritten on NumPy, SciPy and scikit-image.

The 18-methods paper ran Mesmer and FeatureNet from deepcell-tf 0.12.9,
whose targets come from ``deepcell/utils/transform_utils.py`` and whose
instances from deepcell-toolbox's ``deep_watershed``. Both packages carry a
modified Apache licence that grants use for non-commercial academic purposes
only, which is not compatible with cellbench's BSD-3 licence, so neither is
imported: the functions below are written here from what those functions
are documented to compute.

* :func:`pixelwise_map`: the ``pixelwise`` transform, each pixel interior,
  edge or background (cellbench's class order: background 0 / interior 1 /
  edge 2; DeepCell's channels are edge, interior, background). The inner
  boundary of every cell is its edge, dilated by ``dilation_radius`` into the
  background only: unlike :func:`~.targets.three_class_map`, a dilated edge
  never takes interior pixels.
* :func:`inner_distance`: the ``inner-distance`` transform,
  ``1 / (1 + beta * alpha * r^2)`` with ``r`` the distance of a pixel to its
  cell's centre (the centroid weighted by the distance transform) and
  ``alpha = 1 / sqrt(area)`` (``alpha="auto"``), after eroding every cell's
  edge by ``erosion_width`` px.
* :func:`weighted_cross_entropy`: ``weighted_categorical_crossentropy``,
  the classes weighted by ``total / (n_classes * (count + 1))`` over the batch.
* :func:`deep_watershed`: seeds are the h-maxima of the (smoothed) maxima
  map, the watershed floods the negative (smoothed) interior map inside
  ``interior > interior_threshold``; small objects removed and small holes
  filled.
* :class:`DeepCellTrain` / :class:`DeepCellAugment`: what DeepCell's
  training scripts share: the rate x0.99 after every epoch
  (``rate_scheduler(decay=0.99)``), a random zoom on every crop, flips and
  rotations, no intensity changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from skimage.measure import label, regionprops
from skimage.morphology import disk, h_maxima
from skimage.segmentation import find_boundaries, relabel_sequential, watershed

from cellbench.methods.adapters.semantic.patches import AugmentSettings
from cellbench.methods.adapters.semantic.postprocess import drop_small_labels
from cellbench.methods.adapters.semantic.targets import BACKGROUND, BOUNDARY, INTERIOR
from cellbench.methods.adapters.semantic.train_loop import TrainSettings

__all__ = ["DeepCellAugment", "DeepCellTrain", "deep_watershed", "erode_edges", "fill_holes", "inner_distance",
           "pixelwise_map", "weighted_cross_entropy"]


@dataclass(frozen=True)
class DeepCellTrain(TrainSettings):
    """DeepCell's ``rate_scheduler(decay=0.99)``: the learning rate x0.99 after every epoch."""

    lr_step: int = 1
    lr_gamma: float = 0.99


@dataclass(frozen=True)
class DeepCellAugment(AugmentSettings):
    """DeepCell's data generators: a random zoom on every crop, flips and rotations, no intensity changes."""

    zoom_prob: float = 1.0
    intensity_prob: float = 0.0


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer image, got {labels.dtype} {labels.shape}")
    return labels


def erode_edges(labels: np.ndarray, width: int) -> np.ndarray:
    """``labels`` with the inner boundary of every cell set to 0, ``width`` times over.

    >>> lab = np.zeros((5, 5), np.int32); lab[1:4, 1:4] = 1
    >>> int(erode_edges(lab, 1).sum())
    1
    """
    out = _check_labels(labels).copy()
    for _ in range(max(0, int(width))):
        out[find_boundaries(out, mode="inner")] = 0
    return out


def pixelwise_map(labels: np.ndarray, *, dilation_radius: int = 1) -> np.ndarray:
    """Background / interior / edge map (uint8 0 / 1 / 2) as DeepCell's ``pixelwise`` transform.

    >>> lab = np.zeros((7, 7), np.int32); lab[1:6, 1:6] = 1
    >>> m = pixelwise_map(lab)
    >>> int((m == 1).sum()), int(m[1, 1]), int(m[0, 3]), int(m[0, 0])
    (9, 2, 2, 0)
    """
    labels = _check_labels(labels)
    edge = find_boundaries(labels, mode="inner")
    interior = ~edge & (labels > 0)
    if dilation_radius:
        edge = ndimage.binary_dilation(edge, structure=disk(int(dilation_radius))) & ~interior
    out = np.full(labels.shape, BACKGROUND, dtype=np.uint8)
    out[interior] = INTERIOR
    out[edge] = BOUNDARY
    return out


def inner_distance(labels: np.ndarray, *, erosion_width: int = 1, alpha: float | Literal["auto"] = "auto",
                   beta: float = 1.0) -> np.ndarray:
    """DeepCell's inner-distance target (float32, 1 at each cell's centre, falling towards its edge, 0 outside).

    Each connected piece of each (eroded) cell is one object, as DeepCell labels them.

    >>> lab = np.zeros((9, 9), np.int32); lab[1:8, 1:8] = 1
    >>> d = inner_distance(lab)
    >>> float(d[4, 4]), float(d[0, 0]), float(d[1, 1]), bool(0 < d[2, 2] < 1)
    (1.0, 0.0, 0.0, True)
    """
    if not (alpha == "auto" or isinstance(alpha, (int, float))):
        raise ValueError(f"alpha must be a number or 'auto', got {alpha!r}")
    eroded = erode_edges(labels, erosion_width)
    out = np.zeros(eroded.shape, dtype=np.float32)
    pieces = label(eroded, background=0, connectivity=2)
    if not pieces.any():
        return out
    distance = ndimage.distance_transform_edt(pieces > 0)
    for prop in regionprops(pieces, intensity_image=distance):
        rows, cols = prop.coords[:, 0], prop.coords[:, 1]
        centre = prop.centroid_weighted
        r2 = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2
        a = 1.0 / np.sqrt(prop.area) if alpha == "auto" else float(alpha)
        out[rows, cols] = 1.0 / (1.0 + beta * a * r2)
    return out


def weighted_cross_entropy(logits: Any, classes: Any) -> Any:
    """Mean over pixels of the class-weighted cross-entropy (``weighted_categorical_crossentropy``).

    ``logits`` B x C x H x W, ``classes`` B x H x W (or B x 1 x H x W) integer
    targets. Class ``c`` weighs ``N / (C * (n_c + 1))``, with ``n_c`` its pixels
    in the batch and ``N`` all pixels, so rare classes (edges) count as much as
    the background.
    """
    import torch

    n_classes = logits.shape[1]
    target = classes.reshape(classes.shape[0], *logits.shape[2:]).long()
    onehot = torch.nn.functional.one_hot(target, n_classes).permute(0, 3, 1, 2).to(logits.dtype)
    counts = onehot.sum(dim=(0, 2, 3), keepdim=True)
    weights = onehot.sum() / (n_classes * (counts + 1.0))
    log_p = torch.log_softmax(logits, dim=1)
    return -(onehot * log_p * weights).sum(dim=1).mean()


def fill_holes(labels: np.ndarray, size: int) -> np.ndarray:
    """Holes (4-connected) of under ``size`` px lying wholly inside one cell are given to that cell.

    The toolbox's version fills every small background piece of the cell's
    bounding box, enclosed or not; here only enclosed holes are filled, as its
    docstring describes.

    >>> lab = np.ones((5, 5), np.int32); lab[2, 2] = 0
    >>> int(fill_holes(lab, 2)[2, 2])
    1
    """
    out = labels.copy()
    for prop in regionprops(labels):
        if prop.euler_number >= 1:
            continue
        patch = out[prop.slice]
        mask = patch == prop.label
        holes, n = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
        if n:
            small = np.bincount(holes.ravel()) < size
            small[0] = False
            patch[small[holes]] = prop.label
    return out


def deep_watershed(
    maxima: np.ndarray,
    interior: np.ndarray,
    *,
    radius: int = 2,
    maxima_threshold: float = 0.1,
    interior_threshold: float = 0.2,
    maxima_smooth: float = 0.0,
    interior_smooth: float = 2.0,
    small_objects_threshold: int = 15,
    fill_holes_threshold: int = 15,
) -> np.ndarray:
    """Label image from a maxima map (inner distance) and an interior map, as deepcell-toolbox's ``deep_watershed``.

    The defaults are the Mesmer application's nuclear settings (its whole-cell
    ones differ in ``maxima_threshold``, 0.075); the toolbox function's own
    defaults are ``radius`` 10, ``maxima_threshold`` 0.1, ``interior_threshold``
    0.01, ``interior_smooth`` 1 and no size filter. Seeds are the h-maxima of
    height ``maxima_threshold`` (a disk of ``radius`` as neighbourhood).

    >>> yy, xx = np.mgrid[:20, :40]
    >>> m = np.maximum(1 / (1 + 0.2 * ((yy - 10) ** 2 + (xx - 10) ** 2)), 1 / (1 + 0.2 * ((yy - 10) ** 2 + (xx - 30) ** 2)))
    >>> lab = deep_watershed(m, (m > 0.02).astype(float), interior_smooth=0)
    >>> int(lab.max()), int(lab[10, 10]), int(lab[10, 30])
    (2, 1, 2)
    """
    maxima = np.asarray(maxima, dtype=np.float64)
    interior = np.asarray(interior, dtype=np.float64)
    if maxima.shape != interior.shape or maxima.ndim != 2:
        raise ValueError(f"maxima and interior must be two 2-D maps of one shape, got {maxima.shape}, "
                         f"{interior.shape}")
    if maxima_smooth:
        maxima = ndimage.gaussian_filter(maxima, maxima_smooth)
    if interior_smooth:
        interior = ndimage.gaussian_filter(interior, interior_smooth)
    markers = label(h_maxima(maxima, maxima_threshold, footprint=disk(int(radius))))
    labels = watershed(-interior, markers, mask=interior > interior_threshold).astype(np.int32)
    if small_objects_threshold:
        labels = drop_small_labels(labels, small_objects_threshold)
    if fill_holes_threshold > 0:
        labels = fill_holes(labels, fill_holes_threshold)
    return relabel_sequential(labels)[0].astype(np.int32)
