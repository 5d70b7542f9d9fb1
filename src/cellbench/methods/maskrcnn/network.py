"""The Mask R-CNN network: torchvision's v2 recipe on a chosen ResNet-FPN, COCO weights, detection.

:func:`build_network` follows ``torchvision.models.detection.maskrcnn_resnet50_fpn_v2``
(Li et al. 2021, "Benchmarking detection transfer learning with vision
transformers"): a ResNet with an FPN whose convolutions carry batch norm, a
two-convolution RPN head, a box head of four 3 x 3 convolutions and one fully
connected layer, and a four-convolution mask head, all with batch norm. With
``resnet50`` it is exactly torchvision's network, so the COCO checkpoint
loads into it; ``resnet18`` / ``resnet34`` are the lighter CPU variants.
On a CPU the heads, not the backbone, cost most: each sampled region goes
through four 3 x 3 convolutions in the box head (and each positive one through
four more at 14 x 14 in the mask head), so ``head_width`` (256 as published)
can be lowered there.

:func:`detect` runs the network and pastes each 28 x 28 mask into its own
box only (torchvision pastes every mask into a full-image array, which for
3000 detections on a 512 px tile is gigabytes).

torch and torchvision are imported here only; nothing else in cellbench needs them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellbench.errors import DataError
from cellbench.instances import Instance
from cellbench.methods import torch_file
from cellbench.methods.maskrcnn import BACKBONES

__all__ = ["BACKBONES", "Detection", "build_network", "detect", "load_pretrained", "set_input_size"]

log = logging.getLogger(__name__)

#: Parameters that depend on the number of classes: not taken from a checkpoint trained on other classes.
_CLASS_HEADS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


@dataclass(frozen=True)
class NetworkSettings:
    """What :func:`build_network` needs; a subset of the method's config."""

    backbone: str
    num_classes: int  # including background
    trainable_layers: int
    anchor_sizes: tuple[int, ...]
    detections_per_image: int
    rpn_post_nms: int
    roi_batch_size: int
    score_threshold: float
    nms_threshold: float
    head_width: int = 256


def build_network(s: NetworkSettings) -> nn.Module:
    """A randomly initialised Mask R-CNN with v2 heads on ``s.backbone`` (torchvision's initialisation)."""
    from torchvision.models import resnet
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, RPNHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    if s.backbone not in BACKBONES:
        raise DataError(f"unknown Mask R-CNN backbone {s.backbone!r}; known: {list(BACKBONES)}")
    if len(s.anchor_sizes) != 5:
        raise DataError(f"anchor_sizes needs one size per FPN level (5), got {list(s.anchor_sizes)}")
    trunk = getattr(resnet, s.backbone)(weights=None)
    backbone = _resnet_fpn_extractor(trunk, s.trainable_layers, norm_layer=nn.BatchNorm2d)
    anchors = AnchorGenerator(tuple((int(a),) for a in s.anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
    width = s.head_width
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [width] * 4, [1024], norm_layer=nn.BatchNorm2d)
    mask_head = MaskRCNNHeads(backbone.out_channels, [width] * 4, 1, norm_layer=nn.BatchNorm2d)
    # given here, not by MaskRCNN, which assumes 256 channels (torchvision's own layer sizes otherwise)
    box_predictor = FastRCNNPredictor(1024, s.num_classes)
    mask_predictor = MaskRCNNPredictor(width, width, s.num_classes)
    return MaskRCNN(
        backbone, num_classes=None, box_predictor=box_predictor, rpn_anchor_generator=anchors, rpn_head=rpn_head,
        box_head=box_head, mask_head=mask_head, mask_predictor=mask_predictor,
        rpn_pre_nms_top_n_train=2 * s.rpn_post_nms, rpn_post_nms_top_n_train=s.rpn_post_nms,
        rpn_pre_nms_top_n_test=2 * s.rpn_post_nms, rpn_post_nms_top_n_test=s.rpn_post_nms,
        box_detections_per_img=s.detections_per_image, box_score_thresh=s.score_threshold,
        box_nms_thresh=s.nms_threshold, box_batch_size_per_image=s.roi_batch_size,
        # cellbench normalises images itself (percentile); the network sees them as they are
        image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A Mask R-CNN state dict read safely, unwrapped from torchvision's training-reference checkpoint
    (``{"model": ..., "optimizer": ...}``); a DataError names a bad file."""
    return torch_file.read_state_dict(path, what="Mask R-CNN weights file", wrappers=("model",))


def load_pretrained(model: nn.Module, path: str | Path) -> dict:
    """Load a Mask R-CNN checkpoint (e.g. torchvision's COCO v2 weights) for fine-tuning.

    Every parameter is taken except the class-specific last layers of the box
    and mask predictors when the checkpoint has another number of classes
    (COCO has 91): those stay randomly initialised, the usual transfer recipe.
    Anything else that does not fit (another backbone) is a DataError.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    skipped = sorted(k for k, v in state.items()
                     if k.startswith(_CLASS_HEADS) and k in own and own[k].shape != v.shape)
    wrong = sorted(k for k, v in state.items() if k in own and k not in skipped and own[k].shape != v.shape)
    missing = sorted(set(own) - set(state) - {k for k in own if k.startswith(_CLASS_HEADS)})
    unexpected = sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        problems = [f"{name}: {keys[:3]}{' ...' if len(keys) > 3 else ''}"
                    for name, keys in (("shape differs", wrong), ("missing", missing), ("unexpected", unexpected))
                    if keys]
        raise DataError(f"weights do not fit this Mask R-CNN ({'; '.join(problems)}); "
                        "COCO weights need backbone resnet50", path=path)
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return {"from": str(path), "class_heads_reinitialised": bool(skipped)}


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


def _paste(mask: torch.Tensor, box: np.ndarray, shape: tuple[int, int], threshold: float) -> Instance | None:
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
        inst = _paste(masks[k, 0], boxes[k].numpy(), (h, w), mask_threshold)
        if inst is not None:
            detections.append(Detection(inst.replace(score=float(scores[k])), int(labels[k]) - 1,
                                        tuple(float(v) for v in boxes[k])))
    return detections
