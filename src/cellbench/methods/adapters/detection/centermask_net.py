"""CenterMask's network: the family's backbone and FPN, FCOS on P3-P7, the SAG-Mask head on P3-P5.

:class:`CenterMaskNet` behaves as a torchvision detector does: in training
``model(images, targets)`` returns its losses (the family's loop sums them),
in evaluation it returns each image's detections and mask probabilities.
Training the mask head follows CenterMask2 (detectron2's RoI heads on FCOS's
proposals): the detector's ``train_proposals`` best boxes after NMS (no
gradient through them) and the ground-truth boxes are the proposals; those
that overlap an instance by IoU 0.5 are positives, at most
``mask_batch_size`` per image (sampled at random) learn its mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from cellbench.methods.adapters.detection.fcos_head import (
    Detections,
    FCOSHead,
    FCOSSettings,
    fcos_detections,
    fcos_losses,
)
from cellbench.methods.adapters.detection.sag_mask_head import SAGMaskHead, mask_loss, mask_targets, pool_features

__all__ = ["CenterMaskNet", "CenterMaskSettings"]


class CenterMaskSettings(FCOSSettings, Protocol):
    """The settings the network reads: fields of ``CenterMaskConfig``."""

    score_threshold: float
    pre_nms: int
    nms_threshold: float
    detections_per_image: int
    train_proposals: int
    output_threshold: float
    mask_width: int
    mask_levels: tuple[int, int]
    mask_batch_size: int


class CenterMaskNet(nn.Module):
    """Backbone with FPN (``backbone``), :class:`~.fcos_head.FCOSHead` (``fcos``),
    :class:`~.sag_mask_head.SAGMaskHead` (``sag_mask``) and torchvision's detection transform (resizing by
    ``scale``, padding to a multiple of 32)."""

    def __init__(self, backbone: nn.Module, num_classes: int, s: CenterMaskSettings) -> None:
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        super().__init__()
        self.settings = s
        self.backbone = backbone
        self.fcos = FCOSHead(backbone.out_channels, num_classes, s)
        self.sag_mask = SAGMaskHead(backbone.out_channels, num_classes, s.mask_width)
        # cellbench normalises images itself (percentile); sizes are set by set_input_size
        self.transform = GeneralizedRCNNTransform(800, 1333, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], size_divisible=32)

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> object:
        """Training: the losses. Evaluation: per image its detections (network pixels of the resized input) and
        their mask probabilities (K x 28 x 28, of each detection's class), and the transformed images."""
        s = self.settings
        batch, targets = self.transform(images, targets)
        feats = self.backbone(batch.tensors)  # P2-P5 under "0"-"3"
        logits, boxes, ctrs = self.fcos(self.fcos.pyramid(feats["1"], feats["2"], feats["3"]))
        by_level = {k: feats[str(k - 2)] for k in range(2, 6)}
        sizes = [(int(h), int(w)) for h, w in batch.image_sizes]
        areas = [float(h * w) for h, w in sizes]
        if self.training:
            if targets is None:
                raise ValueError("CenterMask trains on targets (boxes, labels, masks)")
            losses = fcos_losses(logits, boxes, ctrs, targets, s)
            found = fcos_detections(logits, boxes, ctrs, sizes, score_threshold=s.score_threshold,
                                    pre_nms=s.pre_nms, nms_threshold=s.nms_threshold, keep=s.train_proposals)
            losses["loss_mask"] = self._mask_loss(by_level, found, targets, areas)
            return losses
        found = fcos_detections(logits, boxes, ctrs, sizes, score_threshold=s.score_threshold, pre_nms=s.pre_nms,
                                nms_threshold=s.nms_threshold, keep=s.detections_per_image)
        found = [Detections(d.boxes[d.scores >= s.output_threshold], d.scores[d.scores >= s.output_threshold],
                            d.labels[d.scores >= s.output_threshold]) for d in found]
        probs = self.masks(by_level, found, areas)
        return list(zip(found, probs, strict=True)), batch

    def masks(self, by_level: dict[int, torch.Tensor], found: Sequence[Detections], areas: Sequence[float]
              ) -> list[torch.Tensor]:
        """Each image's mask probabilities of its detections' classes (K x 28 x 28)."""
        pooled = pool_features(by_level, [d.boxes for d in found], areas, levels=self.settings.mask_levels)
        labels = torch.cat([d.labels for d in found])
        logits = self.sag_mask(pooled)[torch.arange(len(labels), device=labels.device), labels]
        return list(logits.sigmoid().split([len(d.boxes) for d in found]))

    def _mask_loss(self, by_level: dict[int, torch.Tensor], found: Sequence[Detections],
                   targets: Sequence[dict[str, torch.Tensor]], areas: Sequence[float]) -> torch.Tensor:
        s = self.settings
        rois, labels, goals = [], [], []
        for d, t in zip(found, targets, strict=True):
            proposals = torch.cat([d.boxes, t["boxes"].to(d.boxes)])
            positive, label, goal = mask_targets(proposals, t["boxes"].to(d.boxes), t["masks"], t["labels"] - 1)
            if len(positive) > s.mask_batch_size:
                pick = torch.randperm(len(positive), device=positive.device)[: s.mask_batch_size]
                positive, label, goal = positive[pick], label[pick], goal[pick]
            rois.append(proposals[positive])
            labels.append(label)
            goals.append(goal)
        pooled = pool_features(by_level, rois, areas, levels=s.mask_levels)
        return mask_loss(self.sag_mask(pooled), torch.cat(labels), torch.cat(goals))
