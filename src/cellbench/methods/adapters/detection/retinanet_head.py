"""RetinaNet's dense head on torchvision (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017), with
RetinaMask's training changes (Fu, Shvets & Berg 2019).

Every position of every pyramid level carries ``A`` anchors (3 scales x 3
aspect ratios); two towers of convolutions, shared over the levels, give each
anchor a logit per class and four box deltas:

* anchors (:func:`level_anchors`): per level, sizes ``size x 2^(k/3)`` (k = 0,
  1, 2) and aspect ratios (height / width) 0.5, 1, 2, the area kept; centred
  on the level's pixel centres, ``(i + 0.5) x stride`` with ``stride = 2^level``
  (exact strides: torchvision's ``AnchorGenerator`` divides the input size by
  the map size, which is not the stride on inputs that are not a power of 2);
* towers (:class:`DenseHead`): ``stacked_convs`` (4) 3 x 3 convolutions of
  ``head_width`` (256) channels with ReLU, then a 3 x 3 convolution to ``A x
  classes`` logits (bias for a prior of 0.01) or ``A x 4`` deltas; weights drawn
  from N(0, 0.01) as the paper;
* matching (:func:`match_anchors`): torchvision's ``Matcher``: IoU >= 0.5
  positive, < 0.4 background, in between ignored, and each ground truth's best
  anchors positive whatever their IoU (RetinaMask's "best matching policy";
  torchvision's ``allow_low_quality_matches``);
* losses (:func:`dense_losses`): sigmoid focal loss (alpha 0.25, gamma 2) over
  every anchor not ignored, and a smooth L1 loss of the positives' deltas
  (``(dx, dy, dw, dh)``, weights 1), each summed and divided by the positives
  of the batch; the smooth L1 is RetinaMask's self-adjusting one
  (:class:`SelfAdjustingSmoothL1`) or a fixed one;
* detections (:func:`detect_boxes`): per level the ``pre_nms`` (1000) best
  (anchor, class) scores above ``score_threshold`` (0.05), boxes decoded and
  clipped, NMS per class at ``nms_threshold`` (0.5), the ``detections`` best kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, sigmoid_focal_loss

__all__ = ["BOX_CODER", "DenseHead", "Detections", "SelfAdjustingSmoothL1", "dense_losses", "detect_boxes",
           "level_anchors", "match_anchors"]

#: Box deltas as RetinaNet encodes them: (dx, dy, dw, dh), weights 1 (the size deltas clipped at log(1000 / 16)).
BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
#: Aspect ratios (height / width) and scales per octave of the anchors at each position (the paper's).
ASPECT_RATIOS = (0.5, 1.0, 2.0)
SCALES_PER_OCTAVE = 3


def level_anchors(size: float, stride: int, height: int, width: int, *, ratios: Sequence[float] = ASPECT_RATIOS,
                  scales: int = SCALES_PER_OCTAVE) -> torch.Tensor:
    """The anchors (``x0, y0, x1, y1``) of a ``height x width`` level: position-major, then ratio, then scale.

    >>> level_anchors(8, 4, 1, 2, ratios=(1.0,), scales=1).tolist()
    [[-2.0, -2.0, 6.0, 6.0], [2.0, -2.0, 10.0, 6.0]]
    """
    sides = torch.tensor([size * 2 ** (k / scales) for k in range(scales)], dtype=torch.float32)
    ratio = torch.tensor(ratios, dtype=torch.float32)
    h = (sides[None, :] * ratio.sqrt()[:, None]).flatten()  # ratio-major, as torchvision's AnchorGenerator
    w = (sides[None, :] / ratio.sqrt()[:, None]).flatten()
    base = torch.stack([-w, -h, w, h], dim=1) / 2
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
    return (centres + base[None]).reshape(-1, 4)


def match_anchors(anchors: torch.Tensor, boxes: torch.Tensor, *, positive: float = 0.5,
                  negative: float = 0.4) -> torch.Tensor:
    """Per anchor the index of its ground-truth box, -1 for background, -2 for ignored.

    IoU >= ``positive``: matched; below ``negative``: background; between: ignored; and every ground truth
    matches its best anchors (all that tie) whatever the IoU, so no cell goes without an anchor.
    """
    if len(boxes) == 0:
        return torch.full((len(anchors),), -1, dtype=torch.long, device=anchors.device)
    matcher = Matcher(positive, negative, allow_low_quality_matches=True)
    return matcher(box_iou(boxes, anchors))


def _conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


class DenseHead(nn.Module):
    """RetinaNet's classification and box towers, shared by every level."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, *, width: int = 256,
                 stacked_convs: int = 4, prior: float = 0.01) -> None:
        super().__init__()
        self.num_anchors, self.num_classes = num_anchors, num_classes

        def tower() -> nn.Sequential:
            layers: list[nn.Module] = []
            for k in range(stacked_convs):
                layers += [_conv(in_channels if k == 0 else width, width), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_logits = _conv(width, num_anchors * num_classes)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))
        self.bbox_pred = _conv(width, num_anchors * 4)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B x anchors x classes) and deltas (B x anchors x 4), levels concatenated in the anchors' order."""
        logits, deltas = [], []
        for x in feats:
            b, _, h, w = x.shape
            cls = self.cls_logits(self.cls_tower(x)).view(b, self.num_anchors, self.num_classes, h, w)
            box = self.bbox_pred(self.box_tower(x)).view(b, self.num_anchors, 4, h, w)
            logits.append(cls.permute(0, 3, 4, 1, 2).reshape(b, -1, self.num_classes))
            deltas.append(box.permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)


class SelfAdjustingSmoothL1(nn.Module):
    """RetinaMask's self-adjusting smooth L1: the point ``beta`` where the loss turns from quadratic to linear
    follows the running mean minus the running variance of ``|x|``, per coordinate, clipped to [1e-3,
    ``beta_max``].

    Training batches update the running statistics (momentum 0.1: 0.9 of the old value kept; they start at mean
    ``beta_max``, variance 0); the loss is ``0.5 x^2 / beta`` below ``beta``, ``|x| - 0.5 beta`` above.
    ``adjust=False`` keeps ``beta = beta_max``: the usual smooth L1.
    """

    def __init__(self, beta_max: float = 0.11, *, momentum: float = 0.1, adjust: bool = True,
                 features: int = 4) -> None:
        super().__init__()
        self.beta_max, self.momentum, self.adjust = beta_max, momentum, adjust
        self.register_buffer("running_mean", torch.full((features,), float(beta_max)))
        self.register_buffer("running_var", torch.zeros(features))

    @property
    def beta(self) -> torch.Tensor:
        """The current ``beta`` per coordinate."""
        if not self.adjust:
            return torch.full_like(self.running_mean, self.beta_max)
        return (self.running_mean - self.running_var).clamp(min=1e-3, max=self.beta_max)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of each element (N x features)."""
        diff = (pred - target).abs()
        if self.adjust and self.training and len(diff) > 1:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * diff.mean(dim=0))
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * diff.var(dim=0))
        beta = self.beta.to(diff)
        return torch.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta)


def dense_losses(logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
                 targets: Sequence[dict[str, torch.Tensor]], box_loss: SelfAdjustingSmoothL1, *,
                 positive: float = 0.5, negative: float = 0.4, alpha: float = 0.25, gamma: float = 2.0,
                 ) -> dict[str, torch.Tensor]:
    """RetinaNet's focal loss and box loss of a batch (targets with ``boxes`` and 1-based ``labels``), both
    divided by the batch's positive anchors (at least 1)."""
    cls_terms, box_pred, box_true = [], [], []
    n_pos = 0
    for b, target in enumerate(targets):
        matched = match_anchors(anchors, target["boxes"], positive=positive, negative=negative)
        valid = matched >= -1
        fg = matched >= 0
        onehot = torch.zeros_like(logits[b])
        onehot[fg, target["labels"][matched[fg]] - 1] = 1.0
        cls_terms.append(sigmoid_focal_loss(logits[b][valid], onehot[valid], alpha=alpha, gamma=gamma,
                                            reduction="sum"))
        n_pos += int(fg.sum())
        if fg.any():
            box_pred.append(deltas[b][fg])
            box_true.append(BOX_CODER.encode_single(target["boxes"][matched[fg]], anchors[fg]))
    norm = max(1, n_pos)
    loss_cls = torch.stack(cls_terms).sum() / norm
    if box_pred:
        loss_box = box_loss(torch.cat(box_pred), torch.cat(box_true)).sum() / norm
    else:
        loss_box = deltas.sum() * 0
    return {"loss_cls": loss_cls, "loss_box": loss_box}


@dataclass(frozen=True)
class Detections:
    """One image's detections, best score first: ``boxes`` (N x 4, network pixels), ``scores``, ``labels``
    (0-based class indices)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


@torch.no_grad()
def detect_boxes(logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, level_sizes: Sequence[int],
                 image_size: tuple[int, int], *, score_threshold: float, nms_threshold: float, pre_nms: int,
                 detections: int) -> Detections:
    """One image's detections (``logits`` anchors x classes, ``deltas`` anchors x 4; ``level_sizes`` anchors
    per level): per level the ``pre_nms`` best scores above ``score_threshold``, decoded and clipped to
    ``image_size``; NMS within each class; the ``detections`` best."""
    classes = logits.shape[-1]
    boxes, scores, labels = [], [], []
    for lg, dt, an in zip(logits.split(list(level_sizes)), deltas.split(list(level_sizes)),
                          anchors.split(list(level_sizes)), strict=True):
        prob = lg.sigmoid().flatten()
        keep = torch.nonzero(prob > score_threshold).flatten()
        if len(keep) > pre_nms:
            keep = keep[torch.topk(prob[keep], pre_nms).indices]
        idx = torch.div(keep, classes, rounding_mode="floor")
        box = BOX_CODER.decode_single(dt[idx], an[idx])
        boxes.append(clip_boxes_to_image(box, image_size))
        scores.append(prob[keep])
        labels.append(keep % classes)
    box, score, label = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    wide = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    box, score, label = box[wide], score[wide], label[wide]
    kept = batched_nms(box, score, label, nms_threshold)[:detections]  # best first
    return Detections(box[kept], score[kept], label[kept])
