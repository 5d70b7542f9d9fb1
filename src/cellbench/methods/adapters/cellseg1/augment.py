"""CellSeg1's training augmentations, on numpy arrays with an explicit random generator.

The paper's Albumentations pipeline: brightness / contrast (limits 0.1),
flips (p 0.75), random resized crop (scale 0.3-1.0, ratio 0.75-1.33) and
shift-scale-rotate (scale limit +-0.5, p 0.8). Crop, resize and
shift-scale-rotate are composed into one affine map, so the image is
interpolated once (bilinear) and the labels once (nearest, ids kept).
Pixels mapped from outside the patch are 0 (background).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["AugmentConfig", "augment"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (the ``augment`` section of a CellSeg1 config).

    The defaults are the paper's (and Albumentations' where it names none).
    """

    brightness_limit: float = 0.1
    contrast_limit: float = 0.1
    brightness_contrast_p: float = 0.5
    flip_p: float = 0.75
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.33)
    shift_limit: float = 0.0625
    scale_limit: float = 0.5
    rotate_limit: float = 45.0
    shift_scale_rotate_p: float = 0.8


def _crop_box(h: int, w: int, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[float, float, float, float]:
    """(y0, x0, ch, cw) of a random resized crop, as torchvision / Albumentations draw it."""
    area = h * w
    log_ratio = (math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*cfg.crop_scale)
        ratio = math.exp(rng.uniform(*log_ratio))
        cw = round(math.sqrt(target * ratio))
        ch = round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return float(rng.integers(0, h - ch + 1)), float(rng.integers(0, w - cw + 1)), float(ch), float(cw)
    return 0.0, 0.0, float(h), float(w)


def augment(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    out_size: int,
    config: AugmentConfig = AugmentConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """One random augmentation of a uint8 H x W x 3 patch and its label image, resized to ``out_size``.

    >>> img = np.zeros((32, 32, 3), np.uint8); lab = np.zeros((32, 32), np.int32); lab[8:24, 8:24] = 5
    >>> a, b = augment(img, lab, np.random.default_rng(0), out_size=16)
    >>> a.shape, b.shape, set(np.unique(b)) <= {0, 5}
    ((16, 16, 3), (16, 16), True)
    """
    h, w = labels.shape
    img = image.astype(np.float32)
    if rng.random() < config.brightness_contrast_p:
        alpha = 1.0 + rng.uniform(-config.contrast_limit, config.contrast_limit)
        beta = 255.0 * rng.uniform(-config.brightness_limit, config.brightness_limit)
        img = img * alpha + beta
    if rng.random() < config.flip_p:
        mode = rng.integers(3)  # horizontal, vertical or both, as Albumentations' Flip
        if mode in (0, 2):
            img, labels = img[:, ::-1], labels[:, ::-1]
        if mode in (1, 2):
            img, labels = img[::-1], labels[::-1]

    # output (row, col) -> source (row, col), composed as crop-and-resize after shift-scale-rotate
    y0, x0, ch, cw = _crop_box(h, w, rng, config)
    matrix = np.eye(2)
    offset = np.zeros(2)
    if rng.random() < config.shift_scale_rotate_p:
        scale = 1.0 + rng.uniform(-config.scale_limit, config.scale_limit)
        angle = math.radians(rng.uniform(-config.rotate_limit, config.rotate_limit))
        shift = rng.uniform(-config.shift_limit, config.shift_limit, size=2) * out_size
        centre = np.full(2, (out_size - 1) / 2)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        matrix = rot.T / scale  # inverse of p -> scale * rot @ (p - c) + c + shift
        offset = centre - matrix @ (centre + shift)
    stretch = np.diag([ch / out_size, cw / out_size])
    crop_offset = np.array([y0, x0]) + 0.5 * np.diag(stretch) - 0.5
    full_matrix = stretch @ matrix
    full_offset = stretch @ offset + crop_offset

    out_shape = (out_size, out_size)
    channels = [
        ndimage.affine_transform(img[..., k], full_matrix, full_offset, output_shape=out_shape, order=1, cval=0.0)
        for k in range(img.shape[2])
    ]
    out_img = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    out_lab = ndimage.affine_transform(
        np.ascontiguousarray(labels), full_matrix, full_offset, output_shape=out_shape, order=0, cval=0
    )
    return out_img, out_lab
