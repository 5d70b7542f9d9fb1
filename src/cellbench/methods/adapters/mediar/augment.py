"""MEDIAR's training augmentations and training targets, on numpy arrays with one random generator.

The steps and their probabilities follow MEDIAR's ``train_transforms``
(``train_tools/data_utils/transforms.py``, MONAI 0.9 transforms), in order:

1. random zoom (p 0.5, one factor in [0.25, 1.5] for both axes, area
   interpolation for the image, nearest for the labels, size not kept);
2. symmetric zero padding to the crop size, then a random crop of that size;
3. a flip along a random axis (p 0.5); a rotation by 90, 180 or 270 degrees (p 0.5);
4. cell-aware intensity diversification (always, as in MEDIAR's code; its
   README table says p 0.25): 40 % of the cells in the crop get their
   intensity scaled by one factor ``1 + u``, u uniform in [0, 0.7];
5. each with p 0.25: Gaussian noise (std uniform in [0, 0.1]), contrast
   (gamma in [1, 2]), Gaussian smoothing (sigma [1, 2] on y, [0.25, 1.5] on x),
   histogram shift (3 control points), Gaussian sharpening (sigma1 in
   [0.5, 1], sigma2 in [0.5, sigma1], alpha in [10, 30]).

Images are C x H x W float32 in [0, 1]; labels H x W integers (one id per cell,
0 background). Every random draw comes from the ``numpy.random.Generator``
passed in, so a seed fixes the whole augmentation stream.

The flows a batch trains on are computed from the augmented labels with
Cellpose's own ``cellpose.dynamics.masks_to_flows`` (as MEDIAR computes
them after augmentation, with its copy of that Cellpose code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["AugmentConfig", "augment", "flow_targets"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (MEDIAR's values as defaults).

    Attributes:
        zoom_prob: probability of the random zoom.
        zoom_min, zoom_max: range of the zoom factor.
        flip_prob, rotate_prob: probabilities of the axis flip and the 90-degree rotation.
        diversify_cells: fraction of cells whose intensity is rescaled (0 turns it off).
        diversify_max: the scale factor is ``1 + u``, u uniform in ``[0, diversify_max]``.
        intensity_prob: probability of each of the five intensity augmentations.
    """

    zoom_prob: float = 0.5
    zoom_min: float = 0.25
    zoom_max: float = 1.5
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    diversify_cells: float = 0.4
    diversify_max: float = 0.7
    intensity_prob: float = 0.25

    def __post_init__(self) -> None:
        for name in ("zoom_prob", "flip_prob", "rotate_prob", "diversify_cells", "intensity_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.zoom_min <= self.zoom_max:
            raise ValueError(f"need 0 < zoom_min <= zoom_max, got {self.zoom_min}, {self.zoom_max}")


def _zoom(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize by ``factor``: area interpolation for the image, nearest for the labels (MONAI's modes)."""
    import torch
    import torch.nn.functional as F

    size = [max(1, int(round(s * factor))) for s in labels.shape]
    img = F.interpolate(torch.from_numpy(np.ascontiguousarray(image))[None], size=size, mode="area")[0]
    lab = F.interpolate(torch.from_numpy(labels.astype(np.float32))[None, None], size=size, mode="nearest")[0, 0]
    return img.numpy(), lab.numpy().astype(labels.dtype)


def _pad_and_crop(image: np.ndarray, labels: np.ndarray, size: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad symmetrically to at least ``size`` per side, then take a random ``size`` x ``size`` crop."""
    h, w = labels.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        image = np.pad(image, ((0, 0), *pads))
        labels = np.pad(labels, pads)
        h, w = labels.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return image[:, y:y + size, x:x + size], labels[y:y + size, x:x + size]


def _diversify(image: np.ndarray, labels: np.ndarray, fraction: float, top: float,
               rng: np.random.Generator) -> np.ndarray:
    """Scale the intensity of a random ``fraction`` of the cells by one factor in ``[1, 1 + top]``."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    chosen = rng.choice(ids, int(len(ids) * fraction), replace=False) if len(ids) else ids
    factor = 1.0 + rng.uniform(0.0, top)
    if not len(chosen):
        return image
    inside = np.isin(labels, chosen)
    return np.where(inside[None], image * factor, image).astype(np.float32)


def _contrast(image: np.ndarray, gamma: float) -> np.ndarray:
    lo, span = float(image.min()), float(image.max() - image.min())
    return (((image - lo) / (span + 1e-7)) ** gamma * span + lo).astype(np.float32)


def _histogram_shift(image: np.ndarray, rng: np.random.Generator, points: int = 3) -> np.ndarray:
    """Move the inner control points of a piecewise-linear intensity map at random."""
    reference = np.linspace(0.0, 1.0, points)
    moved = reference.copy()
    for i in range(1, points - 1):
        moved[i] = rng.uniform(moved[i - 1], moved[i + 1])
    lo, hi = float(image.min()), float(image.max())
    ref, new = lo + reference * (hi - lo), lo + moved * (hi - lo)
    if hi <= lo:
        return image
    return np.interp(image, ref, new).astype(np.float32)


def _smooth(image: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    return np.stack([ndimage.gaussian_filter(c, sigma) for c in image]).astype(np.float32)


def augment(image: np.ndarray, labels: np.ndarray, *, crop: int, config: AugmentConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One augmented ``crop`` x ``crop`` training sample from a C x H x W image and its H x W labels.

    >>> img, lab = np.zeros((3, 40, 50), np.float32), np.zeros((40, 50), np.int32)
    >>> a, b = augment(img, lab, crop=32, config=AugmentConfig(), rng=np.random.default_rng(0))
    >>> a.shape, b.shape
    ((3, 32, 32), (32, 32))
    """
    cfg = config
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[1:] != labels.shape:
        raise ValueError(f"need a C x H x W image and H x W labels, got {image.shape} and {labels.shape}")
    if rng.random() < cfg.zoom_prob:
        image, labels = _zoom(image, labels, rng.uniform(cfg.zoom_min, cfg.zoom_max))
    image, labels = _pad_and_crop(image, labels, crop, rng)
    if rng.random() < cfg.flip_prob:
        axis = int(rng.integers(0, 2))
        image, labels = np.flip(image, axis=axis + 1), np.flip(labels, axis=axis)
    if rng.random() < cfg.rotate_prob:
        k = int(rng.integers(1, 4))
        image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k)
    image, labels = np.ascontiguousarray(image), np.ascontiguousarray(labels)
    if cfg.diversify_cells > 0:
        image = _diversify(image, labels, cfg.diversify_cells, cfg.diversify_max, rng)
    p = cfg.intensity_prob
    if rng.random() < p:
        image = (image + rng.normal(0.0, rng.uniform(0.0, 0.1), image.shape)).astype(np.float32)
    if rng.random() < p:
        image = _contrast(image, rng.uniform(1.0, 2.0))
    if rng.random() < p:
        image = _smooth(image, (rng.uniform(1.0, 2.0), rng.uniform(0.25, 1.5)))
    if rng.random() < p:
        image = _histogram_shift(image, rng)
    if rng.random() < p:
        s1 = (rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
        s2 = (rng.uniform(0.5, s1[0]), rng.uniform(0.5, s1[1]))
        alpha = rng.uniform(10.0, 30.0)
        blurred = _smooth(image, s1)
        image = (blurred + alpha * (blurred - _smooth(blurred, s2))).astype(np.float32)
    return image, labels


def flow_targets(labels: np.ndarray) -> np.ndarray:
    """Cellpose flows ``(dy, dx)`` of a label image (2 x H x W float32), by ``cellpose.dynamics``.

    Labels are renumbered 1..n first (Cellpose needs consecutive ids); an image
    with no cell, or a single cell pixel, has zero flows.
    """
    import torch
    from cellpose import dynamics
    from skimage.segmentation import relabel_sequential

    labels = relabel_sequential(np.asarray(labels).astype(np.int32))[0]
    if labels.max() == 0 or np.count_nonzero(labels) == 1:
        return np.zeros((2, *labels.shape), np.float32)
    return np.asarray(dynamics.masks_to_flows(labels, device=torch.device("cpu")), dtype=np.float32)
