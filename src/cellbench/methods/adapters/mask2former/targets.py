"""Mask2Former's training targets: every annotated instance of a crop is one mask with its class.

Crops are the detectors' (:func:`~cellbench.methods.adapters.detection.targets.random_crop`:
a random square window with flips and 90-degree rotations, every instance that
shows in it kept, overlaps included). Mask2Former matches its queries to the
target masks one to one (Hungarian matching), so two overlapping cells are two
targets like any others: nothing is flattened. A crop with no instance is a
valid target too (every query learns "no object").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cellbench.methods.adapters.detection.targets import Crop

__all__ = ["Targets", "batch_targets"]


@dataclass(frozen=True, eq=False)
class Targets:
    """One training batch: ``images`` (B x 3 x S x S float), per crop ``masks`` (N x S x S float 0/1) and
    ``classes`` (N class ids, 0-based): Hugging Face's ``pixel_values``, ``mask_labels`` and ``class_labels``."""

    images: torch.Tensor
    masks: list[torch.Tensor]
    classes: list[torch.Tensor]


def batch_targets(crops: Sequence[Crop]) -> Targets:
    """The batch of ``crops`` as Mask2Former trains on it.

    >>> from cellbench.methods.adapters.detection.targets import Crop
    >>> masks = np.zeros((2, 4, 4), bool); masks[0, :2] = True; masks[1, 1:3] = True  # overlapping
    >>> crop = Crop(np.zeros((4, 4, 3), np.float32), masks, np.zeros((2, 4), np.float32), np.array([1, 2]))
    >>> t = batch_targets([crop])
    >>> tuple(t.images.shape), tuple(t.masks[0].shape), t.classes[0].tolist(), int(t.masks[0].sum())
    ((1, 3, 4, 4), (2, 4, 4), [0, 1], 16)
    """
    images = torch.from_numpy(np.stack([c.image.transpose(2, 0, 1) for c in crops]).astype(np.float32))
    masks = [torch.from_numpy(np.asarray(c.masks, np.float32)) for c in crops]
    classes = [torch.from_numpy(np.asarray(c.labels, np.int64) - 1) for c in crops]  # crops count background as 0
    return Targets(images, masks, classes)
