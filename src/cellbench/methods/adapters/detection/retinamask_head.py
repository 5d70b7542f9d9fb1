"""RetinaMask's network: RetinaNet with a mask head on its detections (Fu, Shvets & Berg, "RetinaMask: Learning
to predict masks improves state-of-the-art single-shot detection for free", 2019).

* Pyramid: the family's backbone with its FPN
  (:func:`~cellbench.methods.adapters.detection.backbones.build_backbone`, P2-P6,
  P6 a max pool of P5 as Mask R-CNN's) and, when level 7 is used, RetinaNet's
  P7, a 3 x 3 convolution of stride 2 on ReLU(P6) (:attr:`RetinaMask.p7`).
  The head reads ``pyramid_levels`` (RetinaNet's P3-P7 by default); a level
  ``L`` has stride ``2^L``.
* Detection: :mod:`~cellbench.methods.adapters.detection.retinanet_head`
  (anchors, towers, matching, focal and self-adjusting smooth L1 losses, NMS).
* Mask head: Mask R-CNN's (torchvision's ``MaskRCNNHeads`` without norm, four
  3 x 3 convolutions of ``head_width`` on 14 x 14 RoIAlign features, and
  ``MaskRCNNPredictor``, a 2 x 2 deconvolution to 28 x 28 and a 1 x 1
  convolution to one sigmoid logit per class), on the detections' boxes.
* RoI level (:func:`mask_levels`): RetinaMask's adaptation of the FPN rule,
  ``k = ceil(k0 + log2(sqrt(wh) / 224))`` with ``k0`` = 4 (``canonical_level``),
  clamped to the levels the head reads: boxes of 113-224 px read P4, 57-112 px
  P3, smaller ones the finest level.
* Mask training (:func:`mask_training_rois`): the detections of the (detached)
  head, scored above 0.05 and NMS-ed as at prediction, whose box overlaps a
  ground truth by IoU >= ``mask_iou`` (0.5), best score first, up to ``mask_rois``
  (the paper: 100) per image, each trained towards the mask of the ground truth it
  overlaps most; ground-truth boxes fill what the detections leave of
  ``mask_rois`` (as Mask R-CNN adds them to its proposals; DeepCell's RetinaMask
  trains masks on the ground-truth boxes only), so the mask head learns before the
  detector finds anything. Loss: torchvision's ``maskrcnn_loss`` (BCE of the
  ground-truth class's 28 x 28 mask against the ground truth's mask RoIAligned to
  the box).
* Prediction: the detections (NMS) and a mask for each kept box.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, roi_align

from cellbench.methods.adapters.detection.retinanet_head import (
    ASPECT_RATIOS,
    SCALES_PER_OCTAVE,
    DenseHead,
    Detections,
    SelfAdjustingSmoothL1,
    dense_losses,
    detect_boxes,
    level_anchors,
)

__all__ = ["HeadSettings", "RetinaMask", "mask_levels", "mask_training_rois", "roi_features"]

#: RoIAlign output and the mask's side (Mask R-CNN's).
ROI_SIZE, MASK_SIZE = 14, 28
#: Score a detection needs to be a mask proposal in training (RetinaNet's score threshold at prediction).
TRAIN_SCORE = 0.05
#: The FPN levels the family's backbone gives, in the order of its outputs.
BACKBONE_LEVELS = (2, 3, 4, 5, 6)


class HeadSettings(Protocol):
    """The settings the network reads: fields of ``RetinaMaskConfig``."""

    pyramid_levels: tuple[int, ...]
    anchor_sizes: tuple[float, ...]
    head_width: int
    stacked_convs: int
    focal_alpha: float
    focal_gamma: float
    positive_iou: float
    negative_iou: float
    box_loss: str
    smooth_l1_beta: float
    mask_rois: int
    mask_iou: float
    canonical_level: int
    score_threshold: float
    nms_threshold: float
    pre_nms: int
    detections_per_image: int


def mask_levels(boxes: torch.Tensor, levels: Sequence[int], *, canonical_level: int = 4,
                canonical_size: float = 224.0) -> torch.Tensor:
    """The pyramid level each box's RoI is read from: ``ceil(k0 + log2(sqrt(wh) / 224))``, clamped to ``levels``.

    >>> mask_levels(torch.tensor([[0, 0, 224, 224], [0, 0, 225, 225], [0, 0, 112, 112], [0, 0, 20, 20.]]),
    ...             (3, 4, 5, 6, 7)).tolist()
    [4, 5, 3, 3]
    """
    side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6).sqrt()
    k = torch.ceil(canonical_level + torch.log2(side / canonical_size) - 1e-6)
    return k.clamp(min=min(levels), max=max(levels)).long()


def roi_features(feats: dict[int, torch.Tensor], boxes: Sequence[torch.Tensor], *, canonical_level: int = 4
                 ) -> torch.Tensor:
    """14 x 14 RoIAlign features (sampling ratio 2, as torchvision's Mask R-CNN) of each image's ``boxes``
    (network pixels), each box from the level :func:`mask_levels` gives it; the images' boxes in order."""
    rois = torch.cat([torch.cat([torch.full_like(b[:, :1], k), b], dim=1) for k, b in enumerate(boxes)])
    first = next(iter(feats.values()))
    out = first.new_zeros((len(rois), first.shape[1], ROI_SIZE, ROI_SIZE))
    if len(rois) == 0:
        return out
    levels = mask_levels(rois[:, 1:], tuple(feats), canonical_level=canonical_level)
    for level in levels.unique().tolist():
        idx = torch.nonzero(levels == level).flatten()
        out[idx] = roi_align(feats[level], rois[idx], (ROI_SIZE, ROI_SIZE), spatial_scale=2.0 ** -level,
                             sampling_ratio=2, aligned=False)
    return out


@torch.no_grad()
def mask_training_rois(found: Detections, gt_boxes: torch.Tensor, *, iou: float, limit: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The boxes one image's mask head trains on and the ground truth each one is trained towards.

    The detections (best first) whose best IoU with a ground truth is >= ``iou``, then the ground-truth boxes,
    the first ``limit`` of them.

    >>> found = Detections(torch.tensor([[0., 0, 10, 10], [50, 50, 60, 60], [1, 0, 11, 10]]),
    ...                    torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.long))
    >>> boxes, idx = mask_training_rois(found, torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]]), iou=0.5, limit=3)
    >>> boxes[:, 0].tolist(), idx.tolist()
    ([0.0, 1.0, 0.0], [0, 0, 0])
    """
    if len(gt_boxes) == 0:
        return gt_boxes.new_zeros((0, 4)), torch.zeros(0, dtype=torch.long, device=gt_boxes.device)
    boxes, matched = gt_boxes, torch.arange(len(gt_boxes), device=gt_boxes.device)
    if len(found.boxes):
        best, idx = box_iou(found.boxes, gt_boxes).max(dim=1)
        positive = best >= iou  # detections come best first
        boxes = torch.cat([found.boxes[positive], gt_boxes])
        matched = torch.cat([idx[positive], matched])
    return boxes[:limit], matched[:limit]


def _mask_loss(logits: torch.Tensor, boxes: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]],
               matched: Sequence[torch.Tensor]) -> torch.Tensor:
    from torchvision.models.detection.roi_heads import maskrcnn_loss

    if len(logits) == 0:
        return logits.sum() * 0
    return maskrcnn_loss(logits, list(boxes), [t["masks"] for t in targets], [t["labels"] for t in targets],
                         list(matched))


class RetinaMask(nn.Module):
    """Backbone with FPN (and P7), RetinaNet's :class:`~.retinanet_head.DenseHead`, Mask R-CNN's mask head and
    torchvision's detection transform (resizing by ``scale``, padding to a multiple of 32).

    In training ``model(images, targets)`` returns the losses (``loss_cls``, ``loss_box``, ``loss_mask``), as a
    torchvision detector does, so the family's loop trains it; in evaluation, per image the
    :class:`~.retinanet_head.Detections` and the mask probabilities of its boxes (N x 28 x 28), and the
    transformed batch.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, s: HeadSettings) -> None:
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        super().__init__()
        levels = tuple(s.pyramid_levels)  # RetinaMaskConfig checks them
        if len(s.anchor_sizes) != len(levels) or not set(levels) <= {*BACKBONE_LEVELS, 7}:
            raise ValueError(f"need one anchor size per pyramid level within 2-7, got levels {list(levels)}, "
                             f"sizes {list(s.anchor_sizes)}")
        self.settings, self.levels = s, levels
        self.backbone = backbone
        channels = backbone.out_channels
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if 7 in levels else None
        num_anchors = len(ASPECT_RATIOS) * SCALES_PER_OCTAVE
        self.head = DenseHead(channels, num_anchors, num_classes, width=s.head_width, stacked_convs=s.stacked_convs)
        self.box_loss = SelfAdjustingSmoothL1(s.smooth_l1_beta, adjust=s.box_loss == "self_adjusting")
        self.mask_head = MaskRCNNHeads(channels, [s.head_width] * 4, 1)
        self.mask_predictor = MaskRCNNPredictor(s.head_width, s.head_width, num_classes + 1)  # 0: background
        # cellbench normalises images itself (percentile); sizes are set by set_input_size
        self.transform = GeneralizedRCNNTransform(800, 1333, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], size_divisible=32)

    def pyramid(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """The levels the head reads, by level number."""
        maps = dict(zip(BACKBONE_LEVELS, self.backbone(x).values(), strict=True))
        if self.p7 is not None:
            maps[7] = self.p7(F.relu(maps[6]))
        return {level: maps[level] for level in self.levels}

    def anchors(self, feats: dict[int, torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        """The anchors of every level, concatenated, and how many each level has."""
        per_level = [level_anchors(size, 2 ** level, *x.shape[-2:])
                     for (level, x), size in zip(feats.items(), self.settings.anchor_sizes, strict=True)]
        device = next(iter(feats.values())).device
        return torch.cat(per_level).to(device), [len(a) for a in per_level]

    def _detect(self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, sizes: list[int],
                image_sizes: Sequence[tuple[int, int]], score_threshold: float) -> list[Detections]:
        s = self.settings
        return [detect_boxes(logits[b].detach(), deltas[b].detach(), anchors, sizes, tuple(image_sizes[b]),
                             score_threshold=score_threshold, nms_threshold=s.nms_threshold, pre_nms=s.pre_nms,
                             detections=s.detections_per_image) for b in range(len(logits))]

    def masks(self, feats: dict[int, torch.Tensor], boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mask logits (N x classes + 1 x 28 x 28) of each image's boxes, the images' boxes in order."""
        rois = roi_features(feats, boxes, canonical_level=self.settings.canonical_level)
        return self.mask_predictor(self.mask_head(rois))

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> object:
        s = self.settings
        batch, targets = self.transform(images, targets)
        feats = self.pyramid(batch.tensors)
        logits, deltas = self.head(list(feats.values()))
        anchors, sizes = self.anchors(feats)
        if self.training:
            if targets is None:
                raise ValueError("RetinaMask trains on targets (boxes, labels, masks)")
            losses = dense_losses(logits, deltas, anchors, targets, self.box_loss, positive=s.positive_iou,
                                  negative=s.negative_iou, alpha=s.focal_alpha, gamma=s.focal_gamma)
            found = self._detect(logits, deltas, anchors, sizes, batch.image_sizes, TRAIN_SCORE)
            rois = [mask_training_rois(f, t["boxes"], iou=s.mask_iou, limit=s.mask_rois)
                    for f, t in zip(found, targets, strict=True)]
            mask_logits = self.masks(feats, [r[0] for r in rois])
            losses["loss_mask"] = _mask_loss(mask_logits, [r[0] for r in rois], targets, [r[1] for r in rois])
            return losses
        found = self._detect(logits, deltas, anchors, sizes, batch.image_sizes, s.score_threshold)
        mask_logits = self.masks(feats, [f.boxes for f in found])
        probs = []
        for f, chunk in zip(found, mask_logits.split([len(f.boxes) for f in found]), strict=True):
            probs.append(chunk[torch.arange(len(chunk), device=chunk.device), f.labels + 1].sigmoid())
        return list(zip(found, probs, strict=True)), batch

