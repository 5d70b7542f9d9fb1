"""Prediction with a torchvision two-stage detector (Mask R-CNN and its kin): sizes, detections, masks pasted.

:func:`set_input_size` makes torchvision's detection transform resize by a
fixed factor (it resizes every image to 800 px otherwise). :func:`detect`
runs the network and pastes each 28 x 28 mask into its own box only
(torchvision pastes every mask into a full-image array, which for 3000
detections on a 512 px tile is gigabytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet

__all__ = ["Detection", "box_mask_instances", "detect", "network_output", "paste_mask", "set_input_size"]


def set_input_size(model: nn.Module, height: int, width: int, scale: float) -> tuple[int, int]:
    """Make the network's transform resize an ``height x width`` input by ``scale``; the resized size.

    torchvision's transform scales the short side to ``min_size`` unless the
    long side would pass ``max_size``; both are set so the factor is ``scale``.
    """
    short, long = min(height, width), max(height, width)
    model.transform.min_size = (max(1, round(short * scale)),)
    model.transform.max_size = max(1, math.ceil(long * scale)) + 1
    factor = model.transform.min_size[0] / short
    return round(height * factor), round(width * factor)


@dataclass(frozen=True)
class Detection:
    """One detected instance: its mask, class index (0-based, background excluded) and score."""

    instance: Instance
    label: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels


def paste_mask(mask: torch.Tensor, box: np.ndarray, shape: tuple[int, int], threshold: float) -> Instance | None:
    """A 28 x 28 mask probability map resampled onto the pixels of its box; None when nothing is left."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = shape
    r0, r1 = max(0, math.floor(y0)), min(h, math.ceil(y1))
    c0, c1 = max(0, math.floor(x0)), min(w, math.ceil(x1))
    if r1 <= r0 or c1 <= c0 or x1 <= x0 or y1 <= y0:
        return None
    # pixel centres in the box's [-1, 1] frame; outside the box the mask is 0 (zero padding)
    ys = ((torch.arange(r0, r1, dtype=torch.float32) + 0.5 - y0) / (y1 - y0)) * 2 - 1
    xs = ((torch.arange(c0, c1, dtype=torch.float32) + 0.5 - x0) / (x1 - x0)) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    prob = F.grid_sample(mask[None, None].float(), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0, 0]
    binary = (prob > threshold).numpy()
    if not binary.any():
        return None
    return Instance.from_mask(binary, offset=(r0, c0))


@torch.no_grad()
def detect(model: nn.Module, image: np.ndarray, *, scale: float, mask_threshold: float = 0.5,
           cross_class_nms: float | None = None) -> list[Detection]:
    """Detections in one H x W x 3 float image, best score first (the model in eval mode).

    ``cross_class_nms``: drop a detection whose box overlaps a better one of
    another class by more than this IoU (torchvision suppresses within a class
    only, so one cell can come out once per class).
    """
    from torchvision.ops import nms

    model.eval()
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    device = next(model.parameters()).device
    rh, rw = set_input_size(model, h, w, scale)
    images, _ = model.transform([x.to(device)])
    features = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, features)
    found, _ = model.roi_heads(features, proposals, images.image_sizes)
    out: dict[str, Any] = {k: v.cpu() for k, v in found[0].items()}
    boxes = out["boxes"] * torch.tensor([w / rw, h / rh, w / rw, h / rh])
    scores, labels, masks = out["scores"], out["labels"], out["masks"]
    keep = torch.argsort(scores, descending=True, stable=True)
    if cross_class_nms is not None and len(keep) and labels.unique().numel() > 1:
        keep = nms(boxes, scores, cross_class_nms)  # nms returns best-first
    detections = []
    for k in keep.tolist():
        inst = paste_mask(masks[k, 0], boxes[k].numpy(), (h, w), mask_threshold)
        if inst is not None:
            detections.append(Detection(inst.replace(score=float(scores[k])), int(labels[k]) - 1,
                                        tuple(float(v) for v in boxes[k])))
    return detections


@torch.no_grad()
def network_output(method: Any, image: np.ndarray) -> tuple[Any, tuple[int, int], tuple[int, int]]:
    """What a single-stage detector's network (``method``'s, in eval mode) returns for one image (a tile), with
    the image's size (h, w) and the network's input size (rh, rw) its boxes and masks are in."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
    model = method._require_model()
    model.eval()
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(method._input(image).transpose(2, 0, 1)))
    rh, rw = set_input_size(model, h, w, method.config.scale)
    output, _ = model([x.to(next(model.parameters()).device)])
    return output, (h, w), (rh, rw)


def box_mask_instances(method: Any, image: np.ndarray) -> InstanceSet:
    """The instances of one image (a tile) from a single-stage detector whose network returns, in eval mode,
    ``((detections, mask probabilities),)`` per image (RetinaMask, CenterMask): boxes scaled back from the
    network's input size, each mask pasted into its own box at ``mask_threshold``; scores and classes kept."""
    ((found, probs),), (h, w), (rh, rw) = network_output(method, image)
    boxes = found.boxes.cpu() * torch.tensor([w / rw, h / rh, w / rw, h / rh])
    instances = []
    for k in range(len(boxes)):
        inst = paste_mask(probs[k].cpu(), boxes[k].numpy(), (h, w), method.config.mask_threshold)
        if inst is not None:
            instances.append(inst.replace(score=float(found.scores[k]), class_id=int(found.labels[k])))
    return InstanceSet(shape=(h, w), instances=tuple(instances), classes=method._classes)
