"""CenterMask's spatial attention-guided mask head (SAG-Mask; Lee and Park, "CenterMask: Real-Time Anchor-Free
Instance Segmentation", CVPR 2020).

The mask branch of CenterMask: each detected box is pooled from one FPN level
and segmented by a small fully convolutional head whose features are
re-weighted by a spatial attention map. As the paper:

* level (:func:`assign_levels`, the paper's Eq. 1): a box of area A_RoI on an
  input of area A_input reads level k = ceil(k_max - log2(A_input / A_RoI)),
  k_max = 5, clamped to P3-P5 (``mask_levels``); unlike Mask R-CNN's rule
  (k0 = 4 for a 224 px box) it adapts to the input size: a box as large as
  the input reads P5, a box half its area P4;
* features: RoIAlign of 14 x 14 (``aligned``, detectron2's ROIAlignV2);
* head (:class:`SAGMaskHead`): four 3 x 3 convolutions of ``mask_width``
  (256) channels with ReLU, the spatial attention module
  (:class:`SpatialAttention`: channel-wise average and max pooling,
  concatenated, a 3 x 3 convolution and a sigmoid, which multiplies the
  features), a 2 x 2 deconvolution of stride 2 with ReLU to 28 x 28, and a
  1 x 1 convolution to one mask logit per class;
* targets and loss (:func:`mask_targets`, :func:`mask_loss`): each
  training proposal (the detector's boxes with the ground-truth boxes added)
  whose best IoU with a ground-truth box is at least 0.5 is a positive; its
  target is that instance's mask sampled in the proposal's box on the 28 x 28
  grid (RoIAlign, >= 0.5); the loss is the mean binary cross-entropy of the
  logits of the instance's class over the positives' pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, roi_align

__all__ = ["MASK_SIZE", "POOL_SIZE", "SAGMaskHead", "SpatialAttention", "assign_levels", "mask_loss", "mask_targets",
           "pool_features"]

#: RoIAlign output side.
POOL_SIZE = 14
#: Side of the predicted masks (after the 2x deconvolution).
MASK_SIZE = 28


def assign_levels(boxes: torch.Tensor, input_area: float | torch.Tensor, *, levels: tuple[int, int] = (3, 5),
                  top: int = 5) -> torch.Tensor:
    """The FPN level of each box (N x 4, ``x0, y0, x1, y1``): ceil(``top`` - log2(input area / box area)),
    clamped to ``levels`` (CenterMask's Eq. 1, k_max = 5); ``input_area``: one, or one per box.

    >>> assign_levels(torch.tensor([[0, 0, 128, 128], [0, 0, 64, 128], [0, 0, 64, 64], [0, 0, 24, 24]]),
    ...               128 * 128).tolist()
    [5, 4, 3, 3]
    """
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).float().clamp(min=1e-6)
    k = torch.ceil(top - torch.log2(input_area / area) - 1e-6)  # an exact power of two stays on its level
    return k.clamp(*levels).long()


def pool_features(feats: Mapping[int, torch.Tensor], boxes: Sequence[torch.Tensor],
                  input_areas: Sequence[float], *, levels: tuple[int, int]) -> torch.Tensor:
    """14 x 14 RoIAlign features of every box of every image (R x C x 14 x 14, images one after the other), each
    from its level of ``feats`` (level k has stride 2^k) for its image's area (``input_areas``)."""
    rois = torch.cat([torch.cat([b.new_full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    some = next(iter(feats.values()))
    out = some.new_zeros((len(rois), some.shape[1], POOL_SIZE, POOL_SIZE))
    if len(rois) == 0:
        return out
    area = torch.cat([b.new_full((len(b),), float(a)) for b, a in zip(boxes, input_areas, strict=True)])
    level = assign_levels(rois[:, 1:], area, levels=levels)
    for k in range(levels[0], levels[1] + 1):
        chosen = torch.nonzero(level == k).flatten()
        if len(chosen):
            out[chosen] = roi_align(feats[k], rois[chosen], POOL_SIZE, spatial_scale=1.0 / 2**k, sampling_ratio=0,
                                    aligned=True)
    return out


class SpatialAttention(nn.Module):
    """CenterMask's spatial attention module: x times sigmoid(3 x 3 conv([mean over channels, max over channels]))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class SAGMaskHead(nn.Module):
    """Four convolutions, spatial attention, 2x deconvolution, per-class 1 x 1 predictor: R x C x 14 x 14 ->
    R x classes x 28 x 28 logits."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 256, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(depth):
            layers += [nn.Conv2d(in_channels if k == 0 else width, width, 3, padding=1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.attention = SpatialAttention()
        self.deconv = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.predictor = nn.Conv2d(width, num_classes, 1)
        for m in [*self.convs, self.deconv]:
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.convs(x))
        return self.predictor(F.relu(self.deconv(x)))


def mask_targets(proposals: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, *,
                 iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The positives of one image's ``proposals`` (P x 4): their indices, class indices and 28 x 28 targets.

    A proposal is positive when its best IoU with a ground-truth box (``boxes``, N x 4) is at least
    ``iou_threshold``; its target is that instance's mask (``masks``, N x H x W) in the proposal's box.
    """
    if len(proposals) == 0 or len(boxes) == 0:
        return (torch.zeros(0, dtype=torch.long, device=proposals.device), labels[:0],
                masks.new_zeros((0, MASK_SIZE, MASK_SIZE), dtype=torch.float32))
    best, match = box_iou(proposals, boxes).max(dim=1)
    positive = torch.nonzero(best >= iou_threshold).flatten()
    owner = match[positive]
    rois = torch.cat([owner[:, None].to(proposals), proposals[positive]], dim=1)
    sampled = roi_align(masks[:, None].to(proposals), rois, MASK_SIZE, spatial_scale=1.0, sampling_ratio=0,
                        aligned=True)[:, 0]
    return positive, labels[owner], (sampled >= 0.5).float()


def mask_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of each positive's mask logits of its class (R x classes x 28 x 28) against its
    target (R x 28 x 28); 0 (connected to the graph) without positives."""
    if len(logits) == 0:
        return logits.sum() * 0
    own = logits[torch.arange(len(logits), device=logits.device), labels]
    return F.binary_cross_entropy_with_logits(own, targets)

