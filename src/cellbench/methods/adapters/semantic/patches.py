"""Random training patches with the MONAI augmentations the NeurIPS-2022 U-Net baseline and saltfish use.

Both reference training scripts run the same MONAI chain on every image:
pad to the patch size (reflect), random crop, random zoom (U-Net: p 0.15,
0.8-1.5x; saltfish: p 1, 0.25-2x), flip along a random axis (p 0.5), rotate
by a random multiple of 90 degrees (p 0.5), then on the image only, each with
p 0.25: Gaussian noise (std up to 0.1), gamma contrast (1-2), Gaussian
smoothing (sigma 1-2), histogram shift (3 control points).

Here the zoom is folded into the crop: a zoom ``z`` crops ``patch / z`` px
of the image and resizes the crop to the patch (image bilinear, class map
nearest, regression target bilinear), which is the same as zooming the whole
image and cropping, for a fraction of the work. The targets are computed
once per image, on the flattened label image, before any augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import resize

__all__ = ["AugmentSettings", "Patch", "random_patch", "stack"]


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities and ranges of the augmentations (MONAI's names and defaults of the U-Net baseline).

    Attributes:
        zoom_prob, zoom_min, zoom_max: random zoom (``RandZoomd``).
        flip_prob, rotate_prob: ``RandAxisFlipd`` and ``RandRotate90d``.
        intensity_prob: probability of each of the four intensity changes.
        noise_std: largest standard deviation of the Gaussian noise.
        gamma_min, gamma_max: range of the gamma of ``RandAdjustContrastd``.
        smooth_min, smooth_max: range of the smoothing sigma along the first axis.
        histogram_points: control points of ``RandHistogramShiftd``.
    """

    zoom_prob: float = 0.15
    zoom_min: float = 0.8
    zoom_max: float = 1.5
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    intensity_prob: float = 0.25
    noise_std: float = 0.1
    gamma_min: float = 1.0
    gamma_max: float = 2.0
    smooth_min: float = 1.0
    smooth_max: float = 2.0
    histogram_points: int = 3

    def __post_init__(self) -> None:
        probs = (self.zoom_prob, self.flip_prob, self.rotate_prob, self.intensity_prob)
        if not all(0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"augmentation probabilities must lie in [0, 1], got {probs}")
        if not 0 < self.zoom_min <= self.zoom_max:
            raise ValueError(f"need 0 < zoom_min <= zoom_max, got {self.zoom_min}, {self.zoom_max}")
        if self.histogram_points < 3:
            raise ValueError(f"histogram_points must be at least 3, got {self.histogram_points}")


@dataclass(frozen=True)
class Patch:
    """One augmented training patch: image C x P x P, class map P x P, optional regression map P x P."""

    image: np.ndarray
    classes: np.ndarray
    regression: np.ndarray | None = None


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` (H x W[ x C]) reflect-padded at the end of each axis up to ``size`` (MONAI ``SpatialPadd``)."""
    pad_h, pad_w = max(0, size - array.shape[0]), max(0, size - array.shape[1])
    if not pad_h and not pad_w:
        return array
    widths = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode="reflect")


def _histogram_shift(image: np.ndarray, rng: np.random.Generator, points: int) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return image
    ref = np.linspace(0.0, 1.0, points)
    moved = ref.copy()
    for k in range(1, points - 1):
        moved[k] = rng.uniform(moved[k - 1], moved[k + 1])
    scaled = (image - lo) / (hi - lo)
    return (np.interp(scaled, ref, moved) * (hi - lo) + lo).astype(np.float32)


def _intensity(image: np.ndarray, rng: np.random.Generator, aug: AugmentSettings) -> np.ndarray:
    """The four image-only changes, each with ``intensity_prob`` (image is C x P x P)."""
    if rng.random() < aug.intensity_prob:
        image = image + rng.normal(0.0, rng.uniform(0.0, aug.noise_std), image.shape).astype(np.float32)
    if rng.random() < aug.intensity_prob:
        lo, hi = float(image.min()), float(image.max())
        if hi > lo:
            gamma = rng.uniform(aug.gamma_min, aug.gamma_max)
            image = (((image - lo) / (hi - lo + 1e-7)) ** gamma * (hi - lo) + lo).astype(np.float32)
    if rng.random() < aug.intensity_prob:
        sigma = (0.0, rng.uniform(aug.smooth_min, aug.smooth_max), rng.uniform(0.25, 1.5))  # MONAI's sigma_y default
        image = ndimage.gaussian_filter(image, sigma=sigma).astype(np.float32)
    if rng.random() < aug.intensity_prob:
        image = _histogram_shift(image, rng, aug.histogram_points)
    return image


def random_patch(
    image: np.ndarray,
    classes: np.ndarray,
    regression: np.ndarray | None,
    *,
    size: int,
    aug: AugmentSettings,
    rng: np.random.Generator,
) -> Patch:
    """One random, augmented ``size`` x ``size`` patch of a prepared image (H x W x C float32) and its targets."""
    zoom = rng.uniform(aug.zoom_min, aug.zoom_max) if rng.random() < aug.zoom_prob else 1.0
    side = max(1, int(round(size / zoom)))
    image, classes = _padded(image, side), _padded(classes, side)
    regression = _padded(regression, side) if regression is not None else None
    y = int(rng.integers(0, image.shape[0] - side + 1))
    x = int(rng.integers(0, image.shape[1] - side + 1))
    window = np.s_[y:y + side, x:x + side]
    img, cls = image[window], classes[window]
    reg = regression[window] if regression is not None else None
    if side != size:
        img = resize(img, (size, size) + img.shape[2:], order=1, preserve_range=True, anti_aliasing=side > size)
        cls = resize(cls, (size, size), order=0, preserve_range=True, anti_aliasing=False)
        if reg is not None:
            reg = resize(reg, (size, size), order=1, preserve_range=True, anti_aliasing=False)
    img = np.moveaxis(np.asarray(img, dtype=np.float32), -1, 0)
    arrays: list[np.ndarray] = [img, np.asarray(cls, dtype=np.int64)[None]]
    if reg is not None:
        arrays.append(np.asarray(reg, dtype=np.float32)[None])
    if rng.random() < aug.flip_prob:
        axis = 1 + int(rng.integers(0, 2))
        arrays = [np.flip(a, axis=axis) for a in arrays]
    if rng.random() < aug.rotate_prob:
        k = int(rng.integers(1, 4))
        arrays = [np.rot90(a, k=k, axes=(1, 2)) for a in arrays]
    img = _intensity(np.ascontiguousarray(arrays[0]), rng, aug)
    return Patch(image=img, classes=np.ascontiguousarray(arrays[1][0]),
                 regression=np.ascontiguousarray(arrays[2][0]) if reg is not None else None)


def stack(patches: Sequence[Patch]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Batch arrays (B x C x P x P image, B x 1 x P x P classes, B x 1 x P x P regression or None)."""
    images = np.stack([p.image for p in patches])
    classes = np.stack([p.classes for p in patches])[:, None]
    regs = [p.regression for p in patches]
    regression = np.stack(regs)[:, None] if all(r is not None for r in regs) else None
    return images, classes, regression
