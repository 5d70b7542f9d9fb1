"""Instances from the semantic maps: seeded watersheds, and scores from the interior probability.

* :func:`interior_watershed` (``unet``): seeds are the connected pieces of
  the interior class (the NeurIPS-2022 baseline stops there: its instances
  are those pieces), grown by a watershed on the negative interior
  probability over the foreground (interior + boundary), so touching cells
  split where the network put a boundary and each cell gets its boundary
  pixels back.
* :func:`three_class_instances` (``unet``, ``featurenet``): that watershed
  on the softmax of background / interior / boundary logits.
* :func:`saltfish_watershed` (``maunet``): the saltfish team's two-pass
  post-processing of the interior class and the distance map (their
  ``predict.py``, function ``output``), rewritten on scikit-image.
* :func:`scored_instances`: every instance's score is its mean interior
  probability, so COCO metrics can rank them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian
from skimage.segmentation import relabel_sequential, watershed

from cellbench.instances import InstanceSet
from cellbench.methods.adapters.semantic.targets import drop_small

__all__ = ["drop_small_labels", "interior_watershed", "saltfish_watershed", "scored_instances", "softmax",
           "three_class_instances"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the first axis (channels).

    >>> softmax(np.zeros((2, 1, 1)))[:, 0, 0].tolist()
    [0.5, 0.5]
    """
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def drop_small_labels(labels: np.ndarray, min_size: float) -> np.ndarray:
    """``labels`` without the objects under ``min_size`` px, relabelled 1..n.

    >>> drop_small_labels(np.array([[1, 1, 0, 3]]), 2).tolist()
    [[1, 1, 0, 0]]
    """
    areas = np.bincount(labels.ravel())
    small = areas < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return relabel_sequential(out)[0]


def interior_watershed(
    p_background: np.ndarray,
    p_interior: np.ndarray,
    *,
    interior_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    min_seed: int = 16,
    min_size: int = 16,
) -> np.ndarray:
    """Label image: interior pieces (>= ``min_seed`` px) grown over the foreground by watershed on -P(interior).

    A pixel is foreground when ``1 - P(background) > foreground_threshold``.
    Objects under ``min_size`` px are dropped.

    >>> p_int = np.zeros((10, 20)); p_int[3:7, 2:8] = 0.9; p_int[3:7, 12:18] = 0.9
    >>> p_bg = np.ones((10, 20)); p_bg[2:8, 1:19] = 0.0
    >>> lab = interior_watershed(p_bg, p_int, min_seed=4, min_size=4)
    >>> int(lab.max()), int((lab == 1).sum() + (lab == 2).sum())
    (2, 108)
    """
    seeds, _ = ndimage.label(drop_small(p_interior > interior_threshold, min_seed))
    foreground = (1.0 - p_background > foreground_threshold) | (seeds > 0)
    if not seeds.any():
        return np.zeros(p_interior.shape, dtype=np.int32)
    labels = watershed(-p_interior, seeds, mask=foreground).astype(np.int32)
    return drop_small_labels(labels, min_size)


def three_class_instances(logits: np.ndarray, **watershed_options: float) -> tuple[np.ndarray, np.ndarray]:
    """(label image, interior probability) of background / interior / boundary logits (3 x H x W): the softmax's
    interior pieces grown over its foreground (:func:`interior_watershed` with ``watershed_options``)."""
    prob = softmax(logits)
    return interior_watershed(prob[0], prob[1], **watershed_options), prob[1]


def _opencv_gaussian(image: np.ndarray, ksize: int) -> np.ndarray:
    """``cv2.GaussianBlur(image, (ksize, ksize), 0)``: OpenCV's sigma for that kernel size, the kernel cut there."""
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    return gaussian(image, sigma=sigma, truncate=((ksize - 1) / 2) / sigma, mode="reflect", preserve_range=True)


def saltfish_watershed(
    p_background: np.ndarray,
    p_interior: np.ndarray,
    distance: np.ndarray,
    *,
    foreground_threshold: float = 0.7,
    interior_threshold: float = 0.7,
    core_fraction: float = 0.85,
    peak_fraction: float = 0.6,
    min_interior: int = 16,
    small_fraction: float = 0.1,
) -> np.ndarray:
    """Label image by saltfish's post-processing of the interior class and the predicted distance map.

    1. foreground: ``P(background) < 1 - foreground_threshold`` (their 0.3);
       interior: ``P(interior) > interior_threshold`` (0.7), pieces under
       ``min_interior`` px dropped;
    2. the distance map smoothed by a Gaussian whose kernel side is about the
       square root of the mean interior piece's area (OpenCV's sigma rule);
    3. pass 1: cores where the smoothed distance exceeds ``core_fraction`` of
       its maximum, inside the interior, each grown over its interior piece;
    4. pass 2: in interior left unclaimed, one seed per local maximum of the
       smoothed distance (at least ``peak_fraction`` of the maximum, a
       quarter kernel apart), grown the same way;
    5. all cells grown over the foreground (so they take back their boundary
       pixels); cells under ``small_fraction`` of the mean cell area dropped.

    Growing is a watershed on the negative smoothed distance (saltfish runs
    ``cv2.watershed`` on a colour rendering of the binary masks).
    """
    foreground = p_background < 1.0 - foreground_threshold
    interior = drop_small(p_interior > interior_threshold, min_interior) & foreground
    pieces, n = ndimage.label(interior)
    if n == 0:
        return np.zeros(p_interior.shape, dtype=np.int32)
    side = int(np.sqrt(interior.sum() / n))
    side += side % 2 + 1  # odd, as saltfish makes it
    smooth = _opencv_gaussian(distance.astype(np.float64), side)
    top = float(smooth.max())
    cores, _ = ndimage.label((smooth > core_fraction * top) & interior)
    first = watershed(-smooth, cores, mask=interior) if cores.any() else np.zeros_like(cores)
    left = interior & (first == 0)
    peaks = peak_local_max(smooth, min_distance=max(1, side // 4), threshold_abs=peak_fraction * top,
                           exclude_border=False)
    peaks = peaks[left[tuple(peaks.T)]] if len(peaks) else peaks
    seeds = np.zeros(interior.shape, dtype=np.int32)
    if len(peaks):
        seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    second = watershed(-smooth, seeds, mask=left) if len(peaks) else np.zeros_like(seeds)
    both = first + np.where(second > 0, second + first.max(), 0)
    if not both.any():
        return np.zeros(p_interior.shape, dtype=np.int32)
    grown = watershed(-smooth, both, mask=foreground | (both > 0)).astype(np.int32)
    grown = relabel_sequential(grown)[0]
    mean_area = np.count_nonzero(grown) / max(1, int(grown.max()))
    return drop_small_labels(grown, small_fraction * mean_area)


def scored_instances(labels: np.ndarray, p_interior: np.ndarray) -> InstanceSet:
    """Instances of a label image, each scored with its mean interior probability.

    >>> lab = np.array([[1, 1, 0, 2]]); p = np.array([[0.8, 0.6, 0.0, 0.9]])
    >>> [round(i.score, 2) for i in scored_instances(lab, p)]
    [0.7, 0.9]
    """
    found = InstanceSet.from_label_image(np.asarray(labels))
    if not len(found):
        return found
    ids = [inst.source_id for inst in found]
    means = ndimage.mean(np.asarray(p_interior, dtype=np.float64), labels=labels, index=ids)
    scored = tuple(inst.replace(score=float(m)) for inst, m in zip(found, means))
    return found.replace(instances=scored)
