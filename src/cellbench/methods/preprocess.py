"""Preprocessing steps from the papers, as pure functions on arrays.

* percentile normalisation to [0, 1] between the 0.1 and 99.9 percentiles
  (18-methods benchmark);
* CLAHE, contrast-limited adaptive histogram equalisation (18-methods
  benchmark; scikit-image's implementation);
* sliding windows of 256 px with step 192 (18-methods benchmark; CellSeg1
  trains on 256 px patches);
* replication of training patches to at least 32 (CellSeg1, so one image
  still fills an effective batch).

:class:`PreprocessConfig` bundles the per-image steps so a method can record
them in its config, and :func:`preprocess` applies them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from skimage import exposure

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet

__all__ = [
    "PreprocessConfig",
    "clahe",
    "crop_instances",
    "percentile_normalize",
    "preprocess",
    "replicate_patches",
    "sliding_windows",
    "to_gray",
    "window_positions",
]

T = TypeVar("T")


@dataclass(frozen=True)
class PreprocessConfig:
    """Per-image preprocessing a method applies before training and prediction.

    Attributes:
        normalize: ``percentile`` maps the ``low`` / ``high`` percentiles to
            0 / 1 (per channel); ``none`` only converts to float32.
        low, high: percentiles for ``percentile`` normalisation.
        clahe: apply CLAHE after normalising.
        clahe_clip: CLAHE clip limit (scikit-image's ``clip_limit``).
        clahe_kernel: CLAHE tile size in pixels (None: 1/8 of the image side).
    """

    normalize: Literal["percentile", "none"] = "percentile"
    low: float = 0.1
    high: float = 99.9
    clahe: bool = False
    clahe_clip: float = 0.01
    clahe_kernel: int | None = None

    def __post_init__(self) -> None:
        if self.normalize not in ("percentile", "none"):
            raise ValueError(f"normalize must be 'percentile' or 'none', got {self.normalize!r}")
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(f"need 0 <= low < high <= 100, got low={self.low}, high={self.high}")


def to_gray(image: np.ndarray) -> np.ndarray:
    """One channel from H x W or H x W x C (channels averaged; an alpha channel ignored).

    >>> to_gray(np.ones((2, 3, 3))).shape
    (2, 3)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3:
        channels = image[..., :3] if image.shape[-1] == 4 else image
        return channels.astype(np.float32).mean(axis=-1)
    raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")


def percentile_normalize(
    image: np.ndarray, *, low: float = 0.1, high: float = 99.9, clip: bool = False
) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles to 0 and 1 (each channel of H x W x C on its own).

    A flat image (both percentiles equal) becomes all zeros.

    >>> x = np.arange(1001, dtype=np.uint16).reshape(7, 143)
    >>> y = percentile_normalize(x, low=0, high=100)
    >>> float(y.min()), float(y.max()), y.dtype.name
    (0.0, 1.0, 'float32')
    """
    image = np.asarray(image, dtype=np.float32)
    axes = (0, 1) if image.ndim == 3 else None
    lo = np.percentile(image, low, axis=axes, keepdims=axes is not None)
    hi = np.percentile(image, high, axis=axes, keepdims=axes is not None)
    scale = np.where(hi > lo, hi - lo, np.inf)
    out = ((image - lo) / scale).astype(np.float32)
    return np.clip(out, 0.0, 1.0) if clip else out


def clahe(image: np.ndarray, *, clip_limit: float = 0.01, kernel_size: int | None = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of an image in [0, 1] (values outside are clipped).

    Channels of an H x W x C image are equalised one by one.

    >>> y = clahe(np.linspace(0, 1, 64 * 64).reshape(64, 64))
    >>> y.shape, y.dtype.name, 0.0 <= float(y.min()) <= float(y.max()) <= 1.0
    ((64, 64), 'float32', True)
    """
    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if image.ndim == 3:  # each channel on its own (scikit-image would treat RGB as a colour image)
        return np.stack([clahe(image[..., c], clip_limit=clip_limit, kernel_size=kernel_size)
                         for c in range(image.shape[-1])], axis=-1)
    out = exposure.equalize_adapthist(image, kernel_size=kernel_size, clip_limit=clip_limit)
    return out.astype(np.float32)


def preprocess(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Apply ``config`` to one image; returns float32 of the same shape.

    >>> preprocess(np.array([[0, 50], [100, 200]], np.uint8), PreprocessConfig(low=0, high=100)).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    out = np.asarray(image, dtype=np.float32)
    if config.normalize == "percentile":
        out = percentile_normalize(out, low=config.low, high=config.high)
    if config.clahe:
        out = clahe(out, clip_limit=config.clahe_clip, kernel_size=config.clahe_kernel)
    return out


def window_positions(shape: Sequence[int], *, size: int = 256, step: int = 192) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of square windows every ``step`` px, the last flush with the edge.

    An axis shorter than ``size`` gets one window of its full length.

    >>> window_positions((300, 256))
    [(0, 0, 256, 256), (44, 0, 300, 256)]
    """
    if size <= 0 or step <= 0:
        raise ValueError(f"size and step must be positive, got size={size}, step={step}")

    def starts(length: int) -> list[int]:
        if length <= size:
            return [0]
        out = list(range(0, length - size, step))
        return out + [length - size]

    h, w = int(shape[0]), int(shape[1])
    return [(y, x, min(y + size, h), min(x + size, w)) for y in starts(h) for x in starts(w)]


def sliding_windows(image: np.ndarray, *, size: int = 256, step: int = 192) -> list[np.ndarray]:
    """Crops of ``image`` (H x W[ x C]) at :func:`window_positions` (views, not copies).

    >>> [w.shape for w in sliding_windows(np.zeros((256, 400)))]
    [(256, 256), (256, 256)]
    """
    return [image[y0:y1, x0:x1] for y0, x0, y1, x1 in window_positions(image.shape, size=size, step=step)]


def crop_instances(instances: InstanceSet, window: tuple[int, int, int, int]) -> InstanceSet:
    """The instances inside ``window``, cut to it, in window coordinates (order and fields kept).

    >>> s = InstanceSet.from_label_image(np.array([[1, 1, 0, 2]]))
    >>> [i.bbox for i in crop_instances(s, (0, 1, 1, 3))]
    [(0, 0, 1, 1)]
    """
    wy0, wx0, wy1, wx1 = window
    kept = []
    for inst in instances:
        y0, x0 = max(inst.bbox[0], wy0), max(inst.bbox[1], wx0)
        y1, x1 = min(inst.bbox[2], wy1), min(inst.bbox[3], wx1)
        if y0 >= y1 or x0 >= x1:
            continue
        crop = inst.mask[y0 - inst.bbox[0]:y1 - inst.bbox[0], x0 - inst.bbox[1]:x1 - inst.bbox[1]]
        if not crop.any():
            continue
        part = Instance.from_mask(crop, offset=(y0 - wy0, x0 - wx0))
        kept.append(inst.replace(mask=part.mask, bbox=part.bbox, polygon=None))
    return InstanceSet(shape=(wy1 - wy0, wx1 - wx0), instances=tuple(kept), classes=instances.classes)


def replicate_patches(patches: Sequence[T], *, minimum: int = 32) -> list[T]:
    """Repeat the whole list until it holds at least ``minimum`` patches (CellSeg1: 32).

    >>> replicate_patches(["a", "b", "c"], minimum=7)
    ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']
    """
    if not patches:
        raise ValueError("no patches to replicate")
    copies = max(1, math.ceil(minimum / len(patches)))
    return list(patches) * copies
