"""FCOS, the anchor-free detector under CenterMask (Tian et al., "FCOS: Fully Convolutional One-Stage Object
Detection", ICCV 2019), on the family's FPN.

Every location of a feature level (the pixel ``stride // 2 + stride * j`` of
the input) is a sample: it classifies, regresses the distances ``l, t, r, b``
from itself to the four sides of its object's box and predicts the box's
*centerness*. As the paper and the FCOS configuration CenterMask2 builds on
(the improvements FCOS published after the paper, which CenterMask uses:
regression normalised by the stride, centerness on the regression branch,
centre sampling, GIoU):

* levels P3-P7 (strides 8-128): P3-P5 of the family's FPN
  (:func:`~cellbench.methods.adapters.detection.backbones.build_backbone`), P6
  and P7 by 3 x 3 convolutions of stride 2 on P5 and on ReLU(P6) (:class:`FCOSHead`
  ``p6`` / ``p7``);
* head, weights shared over the levels: a classification tower and a box
  tower of ``stacked_convs`` (4) 3 x 3 convolutions, ``head_width`` (256)
  channels, group norm (32 groups) and ReLU; a 3 x 3 convolution to one logit per class
  (sigmoid, bias for a prior of 0.01) on the first, to the four distances and
  to the centerness logit on the second; the distances are ReLU(s_i x) x
  stride with one learnt scale s_i per level;
* targets (:func:`fcos_targets`): a location is a positive of a box when it
  lies within ``center_radius`` (1.5) strides of the box's centre (clipped to
  the box) and the largest of its four distances is in its level's size range
  (0-64, 64-128, 128-256, 256-512, 512-inf px); a location two boxes claim
  takes the smaller box;
* losses (:func:`fcos_losses`): sigmoid focal loss (alpha 0.25, gamma 2) over
  every location and class, divided by the positives; GIoU loss of the
  positives' boxes weighted by their centerness targets (divided by the
  targets' sum); binary cross-entropy of the centerness, divided by the
  positives;
* detections (:func:`fcos_detections`): locations whose class probability is
  above ``score_threshold`` (0.05), at most ``pre_nms`` (1000) per level by
  probability x centerness, boxes clipped to the image, NMS within each class
  at IoU ``nms_threshold`` (0.6), the ``keep`` best; the score is the square
  root of probability x centerness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, generalized_box_iou_loss, sigmoid_focal_loss

__all__ = ["LEVEL_STRIDES", "SIZE_RANGES", "Detections", "FCOSHead", "FCOSSettings", "centerness", "fcos_detections",
           "fcos_losses", "fcos_targets", "locations"]

#: Strides of FCOS's levels P3-P7.
LEVEL_STRIDES = (8, 16, 32, 64, 128)
#: The largest of l, t, r, b (network pixels) each level learns.
SIZE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, math.inf))


class FCOSSettings(Protocol):
    """The settings the head reads: fields of ``CenterMaskConfig`` (FCOS's published values there)."""

    head_width: int
    stacked_convs: int
    center_radius: float
    focal_alpha: float
    focal_gamma: float


def _tower(cin: int, width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(depth):
        conv = nn.Conv2d(cin if k == 0 else width, width, 3, padding=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        # 32 groups as published; narrow towers keep two channels a group (P7 of a small crop is 1 x 1)
        layers += [conv, nn.GroupNorm(math.gcd(32, max(1, width // 2)), width), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def locations(height: int, width: int, stride: int, device: torch.device | None = None) -> torch.Tensor:
    """The input pixels (x, y) a level of ``height`` x ``width`` samples, row by row (H*W x 2).

    >>> locations(2, 3, 8).tolist()
    [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0], [12.0, 12.0], [20.0, 12.0]]
    """
    ys = torch.arange(height, dtype=torch.float32, device=device) * stride + stride // 2
    xs = torch.arange(width, dtype=torch.float32, device=device) * stride + stride // 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


class FCOSHead(nn.Module):
    """P6 / P7 from P5, and the classification, box and centerness predictions of P3-P7."""

    def __init__(self, in_channels: int, num_classes: int, s: FCOSSettings) -> None:
        super().__init__()
        self.settings = s
        self.p6 = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1)
        for conv in (self.p6, self.p7):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.cls_tower = _tower(in_channels, s.head_width, s.stacked_convs)
        self.box_tower = _tower(in_channels, s.head_width, s.stacked_convs)
        self.cls_logits = nn.Conv2d(s.head_width, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(s.head_width, 4, 3, padding=1)
        self.ctr_pred = nn.Conv2d(s.head_width, 1, 3, padding=1)
        for conv in (self.cls_logits, self.box_pred, self.ctr_pred):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))  # a prior of 0.01 per class
        self.scales = nn.Parameter(torch.ones(len(LEVEL_STRIDES)))

    def pyramid(self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor) -> list[torch.Tensor]:
        """P3-P7: the FPN's P3-P5 and P6, P7 computed from P5."""
        p6 = self.p6(p5)
        return [p3, p4, p5, p6, self.p7(F.relu(p6))]

    def forward(self, levels: Sequence[torch.Tensor]
                ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per level P3-P7: class logits (B x C x H x W), distances l, t, r, b in input pixels (B x 4 x H x W)
        and centerness logits (B x 1 x H x W)."""
        logits, boxes, ctrs = [], [], []
        for k, (x, stride) in enumerate(zip(levels, LEVEL_STRIDES, strict=True)):
            cls_feat, box_feat = self.cls_tower(x), self.box_tower(x)
            logits.append(self.cls_logits(cls_feat))
            boxes.append(F.relu(self.scales[k] * self.box_pred(box_feat)) * stride)
            ctrs.append(self.ctr_pred(box_feat))
        return logits, boxes, ctrs


def centerness(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS's centerness of distances ``l, t, r, b`` (N x 4): sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)).

    >>> centerness(torch.tensor([[2.0, 3.0, 2.0, 3.0], [1.0, 4.0, 3.0, 4.0]])).tolist()
    [1.0, 0.5773502588272095]
    """
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    ratio = (lr.min(dim=1).values / lr.max(dim=1).values.clamp(min=1e-6)) * \
        (tb.min(dim=1).values / tb.max(dim=1).values.clamp(min=1e-6))
    return ratio.clamp(min=0).sqrt()


def fcos_targets(points: torch.Tensor, strides: torch.Tensor, ranges: torch.Tensor, boxes: torch.Tensor,
                 labels: torch.Tensor, *, center_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The class (-1: background) and the distances to its box's sides (L x 4) of each location.

    ``points``: L x 2 locations (x, y) of all levels, ``strides`` and ``ranges`` (L x 2) their level's;
    ``boxes``: N x 4 ``x0, y0, x1, y1``, ``labels`` their class indices (0-based). A location is a positive of a
    box when it lies inside the box, within ``center_radius`` strides of its centre on both axes, and the
    largest of its distances lies in its level's range; of several such boxes, the smallest.
    """
    n_points = len(points)
    if len(boxes) == 0:
        return torch.full((n_points,), -1, dtype=torch.long), points.new_zeros((n_points, 4))
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    ltrb = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # L x N x 4
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    reach = strides[:, None] * center_radius
    near = torch.stack([x - torch.maximum(cx - reach, x0), y - torch.maximum(cy - reach, y0),
                        torch.minimum(cx + reach, x1) - x, torch.minimum(cy + reach, y1) - y], dim=2)
    largest = ltrb.max(dim=2).values
    ok = (near.min(dim=2).values > 0) & (largest >= ranges[:, 0:1]) & (largest <= ranges[:, 1:2])
    area = ((x1 - x0) * (y1 - y0))[None].expand(n_points, -1).masked_fill(~ok, math.inf)
    smallest, owner = area.min(dim=1)
    target_labels = torch.where(torch.isfinite(smallest), labels[owner], -1)
    return target_labels, ltrb[torch.arange(n_points), owner]


def _flat(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-level B x K x H x W maps as one B x L x K tensor (levels one after the other, rows of each)."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def level_points(maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The locations, strides and size ranges of every position of the levels ``maps`` (as :func:`_flat`)."""
    points, strides, ranges = [], [], []
    for m, stride, size in zip(maps, LEVEL_STRIDES, SIZE_RANGES, strict=True):
        p = locations(*m.shape[-2:], stride, device=m.device)
        points.append(p)
        strides.append(p.new_full((len(p),), float(stride)))
        ranges.append(p.new_tensor(size).expand(len(p), 2))
    return torch.cat(points), torch.cat(strides), torch.cat(ranges)


def fcos_losses(logits: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], ctrs: Sequence[torch.Tensor],
                targets: Sequence[dict[str, torch.Tensor]], s: FCOSSettings) -> dict[str, torch.Tensor]:
    """Focal loss of the classes, centerness-weighted GIoU loss of the boxes, BCE of the centerness."""
    points, strides, ranges = level_points(logits)
    flat_logits, flat_boxes, flat_ctrs = _flat(logits), _flat(boxes), _flat(ctrs)[..., 0]
    labels, ltrb = zip(*(fcos_targets(points, strides, ranges, t["boxes"].to(points), t["labels"].to(points.device) - 1,
                                      center_radius=s.center_radius) for t in targets), strict=True)
    target_labels, target_ltrb = torch.stack(labels), torch.stack(ltrb)
    positive = target_labels >= 0
    n_pos = max(1.0, float(positive.sum()))
    onehot = torch.zeros_like(flat_logits)
    onehot[positive, target_labels[positive]] = 1.0
    loss_cls = sigmoid_focal_loss(flat_logits, onehot, alpha=s.focal_alpha, gamma=s.focal_gamma,
                                  reduction="sum") / n_pos
    if not positive.any():
        zero = flat_boxes.sum() * 0 + flat_ctrs.sum() * 0
        return {"loss_cls": loss_cls, "loss_box": zero, "loss_ctr": zero}
    pred, goal = flat_boxes[positive], target_ltrb[positive]
    ctr_target = centerness(goal)
    # the boxes around their location (GIoU does not move with the origin)
    giou = generalized_box_iou_loss(torch.cat([-pred[:, :2], pred[:, 2:]], dim=1),
                                    torch.cat([-goal[:, :2], goal[:, 2:]], dim=1), reduction="none")
    loss_box = (giou * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
    loss_ctr = F.binary_cross_entropy_with_logits(flat_ctrs[positive], ctr_target, reduction="sum") / n_pos
    return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_ctr": loss_ctr}


@dataclass(frozen=True)
class Detections:
    """One image's detections, best first: ``boxes`` (K x 4, ``x0, y0, x1, y1``, network pixels), ``scores``
    and ``labels`` (class indices, 0-based)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


@torch.no_grad()
def fcos_detections(logits: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], ctrs: Sequence[torch.Tensor],
                    image_sizes: Sequence[tuple[int, int]], *, score_threshold: float, pre_nms: int,
                    nms_threshold: float, keep: int) -> list[Detections]:
    """The detections of each image of the batch (its unpadded size in ``image_sizes``)."""
    out = []
    for b, (h, w) in enumerate(image_sizes):
        all_boxes, all_scores, all_labels = [], [], []
        for x, d, c, stride in zip(logits, boxes, ctrs, LEVEL_STRIDES, strict=True):
            prob = x[b].flatten(1).T.sigmoid()  # L x C
            score = prob * c[b, 0].flatten().sigmoid()[:, None]
            candidate = prob > score_threshold
            score = score.masked_fill(~candidate, -1.0).flatten()
            top = torch.topk(score, min(pre_nms, int(candidate.sum()))).indices
            where, label = top // prob.shape[1], top % prob.shape[1]
            pts = locations(*x.shape[-2:], stride, device=x.device)[where]
            ltrb = d[b].flatten(1).T[where]
            box = torch.cat([pts - ltrb[:, :2], pts + ltrb[:, 2:]], dim=1)
            box[:, 0::2] = box[:, 0::2].clamp(0, w)
            box[:, 1::2] = box[:, 1::2].clamp(0, h)
            all_boxes.append(box)
            all_scores.append(score[top])
            all_labels.append(label)
        box, score, label = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
        kept = batched_nms(box, score, label, nms_threshold)[:keep]
        out.append(Detections(box[kept], score[kept].sqrt(), label[kept]))
    return out
