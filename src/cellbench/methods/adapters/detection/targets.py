"""Training crops for the detectors: random windows of an image with their instances, overlaps kept.

Each crop is a square window of the (preprocessed, 3-channel) image, padded
with zeros where the image is smaller, flipped and rotated by a random
multiple of 90 degrees; every instance that shows in the window becomes one
target mask with its box and class, whether or not it overlaps another
(nothing is flattened, which is the point of these methods on Glioma C6).
:func:`batch_tensors` turns crops into the inputs and targets torchvision's
detectors train on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cellbench.instances import InstanceSet
from cellbench.methods.preprocess import crop_instances

__all__ = ["Crop", "batch_tensors", "random_crop", "to_rgb"]


def to_rgb(image: np.ndarray) -> np.ndarray:
    """An H x W x 3 float32 view of a preprocessed image: gray repeated, two channels padded with zeros,
    more than three channels cut to the first three.

    >>> to_rgb(np.zeros((4, 5), np.float32)).shape, to_rgb(np.zeros((4, 5, 2), np.float32))[..., 2].max()
    ((4, 5, 3), np.float32(0.0))
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 2:
        return np.repeat(x[..., None], 3, axis=-1)
    if x.shape[-1] >= 3:
        return np.ascontiguousarray(x[..., :3])
    return np.concatenate([x, np.zeros((*x.shape[:2], 3 - x.shape[-1]), np.float32)], axis=-1)


@dataclass(frozen=True, eq=False)
class Crop:
    """One training input: ``image`` (S x S x 3 float32), ``masks`` (N x S x S bool), boxes and classes.

    ``boxes`` are ``x0, y0, x1, y1`` with exclusive ends (the pixel extent), as
    the network predicts them; ``labels`` are class ids + 1 (0 is background).
    """

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def _boxes(masks: np.ndarray) -> np.ndarray:
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    out = np.zeros((len(masks), 4), np.float32)
    for k in range(len(masks)):
        r, c = np.flatnonzero(rows[k]), np.flatnonzero(cols[k])
        out[k] = (c[0], r[0], c[-1] + 1, r[-1] + 1)
    return out


def random_crop(image: np.ndarray, instances: InstanceSet, size: int, rng: np.random.Generator, *,
                augment: bool = True, min_area: int = 1) -> Crop:
    """A ``size`` x ``size`` training crop at a random place, randomly flipped / rotated when ``augment``.

    Instances with fewer than ``min_area`` pixels inside the window are left out.

    >>> inst = InstanceSet.from_label_image(np.pad(np.ones((3, 3), np.int32), 2))
    >>> crop = random_crop(np.zeros((7, 7, 3), np.float32), inst, 8, np.random.default_rng(0))
    >>> crop.image.shape, crop.masks.shape, crop.boxes[0].tolist(), crop.labels.tolist()
    ((8, 8, 3), (1, 8, 8), [2.0, 2.0, 5.0, 5.0], [1])
    """
    h, w = image.shape[:2]
    y0 = int(rng.integers(0, h - size + 1)) if h > size else 0
    x0 = int(rng.integers(0, w - size + 1)) if w > size else 0
    y1, x1 = min(h, y0 + size), min(w, x0 + size)
    out = np.zeros((size, size, 3), np.float32)
    out[: y1 - y0, : x1 - x0] = image[y0:y1, x0:x1]
    inside = [i for i in crop_instances(instances, (y0, x0, y1, x1)) if i.area >= min_area]
    masks = np.zeros((len(inside), size, size), bool)
    for k, inst in enumerate(inside):
        masks[k][inst.slices] = inst.mask
    labels = np.array([i.class_id + 1 for i in inside], np.int64)
    if augment:
        turns = int(rng.integers(4))
        out, masks = np.rot90(out, turns, axes=(0, 1)), np.rot90(masks, turns, axes=(1, 2))
        if rng.random() < 0.5:
            out, masks = out[:, ::-1], masks[:, :, ::-1]
        out, masks = np.ascontiguousarray(out), np.ascontiguousarray(masks)
    return Crop(out, masks, _boxes(masks), labels)


def batch_tensors(crops: Sequence[Crop]) -> tuple[list[Any], list[dict[str, Any]]]:
    """The images (3 x S x S float tensors) and targets (``boxes``, ``labels``, ``masks``) of ``crops``, as a
    torchvision detector takes them in training."""
    import torch

    inputs = [torch.from_numpy(c.image.transpose(2, 0, 1).copy()) for c in crops]
    targets = [{"boxes": torch.from_numpy(c.boxes), "labels": torch.from_numpy(c.labels),
                "masks": torch.from_numpy(c.masks.astype(np.uint8))} for c in crops]
    return inputs, targets
