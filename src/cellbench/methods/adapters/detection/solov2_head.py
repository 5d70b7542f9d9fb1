"""SOLOv2's network on torchvision (Wang et al., "SOLOv2: Dynamic and Fast Instance Segmentation", NeurIPS 2020).

SOLO segments objects by location: the image is divided into an S x S grid,
and the grid cell a cell's centre falls in is responsible for it. SOLOv2
splits the mask prediction into a *kernel* per grid cell and one *mask
feature* map for the whole image; a cell's mask is the 1 x 1 convolution of
the mask feature with its kernel. As MMDetection's ``SOLOV2Head`` (the
18-methods benchmark ran MMDetection 2.28's ``solov2_r50_fpn`` config):

* input: the FPN levels P2-P6 of the family's backbones
  (:func:`~cellbench.methods.adapters.detection.backbones.build_backbone`),
  P2 resized to P3's size and P6 to P5's, so the five levels have strides 8,
  8, 16, 32, 32;
* location-category branch, per level: the level's features sampled at the
  centres of its grid cells (``num_grids`` 40, 36, 24, 16, 12), four 3 x 3
  convolutions (``head_width`` 512, group norm) and a 3 x 3 convolution to one
  logit per class (sigmoid; bias for a prior of 0.01);
* kernel branch, per level: the same sampled features plus two coordinate
  channels, four convolutions and a 3 x 3 convolution to a kernel of
  ``kernel_channels`` (256) weights per cell;
* unified mask feature branch (:class:`MaskFeatures`): P2-P5 each brought to
  stride 4 by convolutions (``mask_width`` 128, group norm) and 2x bilinear
  upsampling, P5 with coordinate channels, summed, and a 1 x 1 convolution to
  ``kernel_channels`` channels;
* targets (:func:`grid_targets`): an instance goes to the levels whose scale
  range holds the square root of its box area; the cells around its centre of
  mass, within ``pos_scale`` (0.2) of its half box and at most one cell from
  the centre's cell, are its positives (a cell two instances claim goes to the
  later one); their mask target is the instance at stride 4;
* losses: sigmoid focal loss (alpha 0.25, gamma 2) over every cell and class,
  divided by the positives + 1, and the Dice loss of each positive's mask,
  averaged over the positives, times ``mask_loss_weight`` (3);
* prediction (:func:`predict_masks`): category scores kept where they are the
  maximum of their 2 x 2 neighbourhood and above ``score_threshold`` (0.1); a
  mask is its probability above ``mask_threshold`` (0.5), dropped when its area
  in mask-feature pixels is not larger than its level's stride (8 at the finest
  level: 128 network pixels, a 13 px disc; smaller cells need ``scale`` > 1); its score is the category score x the
  mean probability inside the mask ("maskness"); then Matrix NMS
  (:func:`~cellbench.methods.adapters.detection.matrix_nms.matrix_nms`).

Grids in pixels: MMDetection divides each (resized, about 1333 x 800) image
into S x S cells. Here the cells of a level are ``grid_size / S`` network
pixels wide, ``grid_size`` being a training crop's side, and an input of another
size has as many cells as fit (the coordinate channels are likewise in units of
``grid_size``), so a crop and a tile of the same size see the same grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from cellbench.methods.adapters.detection.matrix_nms import matrix_nms

__all__ = ["HeadSettings", "LevelTargets", "MaskFeatures", "SOLOv2", "SOLOv2Head", "dice_loss", "grid_shape",
           "grid_targets", "predict_masks"]

#: Strides of the five levels the head reads (P2 at P3's size, P3, P4, P5, P6 at P5's size).
LEVEL_STRIDES = (8, 8, 16, 32, 32)
#: Stride of the unified mask feature.
MASK_STRIDE = 4


class HeadSettings(Protocol):
    """The settings the head reads: fields of ``SOLOv2Config`` (MMDetection's ``solov2_r50_fpn`` values there)."""

    num_grids: tuple[int, ...]
    scale_ranges: tuple[tuple[float, float], ...]
    pos_scale: float
    head_width: int
    stacked_convs: int
    mask_width: int
    kernel_channels: int
    mask_loss_weight: float
    focal_alpha: float
    focal_gamma: float


def _conv_gn(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """Convolution (no bias), group norm (32 groups, fewer for narrow layers), ReLU: MMDetection's ConvModule."""
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
    nn.init.normal_(conv.weight, std=0.01)
    return nn.Sequential(conv, nn.GroupNorm(math.gcd(32, cout), cout), nn.ReLU(inplace=True))


def _coords(rows: torch.Tensor, cols: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Two channels (x, y) of pixel positions ``cols`` / ``rows`` (network pixels) in units of a training crop:
    -1 at its left / top edge, 1 at its right / bottom (1 x 2 x R x C)."""
    y = 2 * rows / grid_size - 1
    x = 2 * cols / grid_size - 1
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy])[None]


def grid_shape(height: int, width: int, cells: int, grid_size: int) -> tuple[int, int]:
    """Rows and columns of a level of ``cells`` cells per ``grid_size`` pixels on an input of ``height`` x ``width``.

    >>> grid_shape(128, 128, 40, 128), grid_shape(96, 160, 40, 128)
    ((40, 40), (30, 50))
    """
    cell = grid_size / cells
    return max(1, math.ceil(height / cell - 1e-6)), max(1, math.ceil(width / cell - 1e-6))


class MaskFeatures(nn.Module):
    """The unified mask feature (MMDetection's ``MaskFeatModule``): P2-P5 brought to stride 4 and summed."""

    def __init__(self, in_channels: int, width: int, out_channels: int, grid_size: int) -> None:
        super().__init__()
        self.grid_size = grid_size
        levels = [_conv_gn(in_channels, width)]
        for level in (1, 2, 3):
            blocks: list[nn.Module] = []
            for k in range(level):  # one convolution and one 2x upsampling per octave
                cin = (in_channels + (2 if level == 3 else 0)) if k == 0 else width
                blocks += [_conv_gn(cin, width), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
            levels.append(nn.Sequential(*blocks))
        self.levels = nn.ModuleList(levels)
        self.out = _conv_gn(width, out_channels, kernel=1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.levels[0](feats[0])
        for k in (1, 2, 3):
            x = feats[k]
            if k == 3:  # where the coordinates enter (MMDetection: the coarsest level)
                h, w = x.shape[-2:]
                centres = [(torch.arange(n, device=x.device, dtype=x.dtype) + 0.5) * 32 for n in (h, w)]
                x = torch.cat([x, _coords(*centres, self.grid_size).expand(len(x), -1, -1, -1)], dim=1)
            out = out + self.levels[k](x)[..., : out.shape[-2], : out.shape[-1]]
        return self.out(out)


@dataclass(frozen=True)
class LevelTargets:
    """One image's targets at one level: ``labels`` (rows x cols, class index or -1 for background) and
    ``owner`` (rows x cols, the index of the instance a positive cell predicts, -1 elsewhere)."""

    labels: torch.Tensor
    owner: torch.Tensor


def grid_targets(masks: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, shape: tuple[int, int],
                 s: HeadSettings, *, grid_size: int) -> list[LevelTargets]:
    """The grid cells of each level that predict each instance (SOLO's centre sampling).

    ``masks``: N x H x W instances on the network's input (``shape`` = H, W), ``boxes`` their ``x0, y0, x1,
    y1``, ``labels`` their class indices (0-based); a level's cells are ``grid_size / num_grids[level]`` pixels
    wide. An instance belongs to each level whose scale range holds
    the square root of its box area; there, the cells within ``pos_scale`` x half its box of its centre of
    mass, and at most one cell from the cell of the centre, are positives of it (its class, its mask).
    """
    h, w = shape
    rows_px = torch.arange(h, dtype=torch.float32) + 0.5
    cols_px = torch.arange(w, dtype=torch.float32) + 0.5
    area = masks.flatten(1).float().sum(dim=1)
    centre_y = (masks.float().sum(dim=2) @ rows_px) / area.clamp(min=1)
    centre_x = (masks.float().sum(dim=1) @ cols_px) / area.clamp(min=1)
    half_w = 0.5 * (boxes[:, 2] - boxes[:, 0]) * s.pos_scale
    half_h = 0.5 * (boxes[:, 3] - boxes[:, 1]) * s.pos_scale
    size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    out = []
    for (low, high), cells in zip(s.scale_ranges, s.num_grids, strict=True):
        rows, cols = grid_shape(h, w, cells, grid_size)
        cell = grid_size / cells
        level_labels = torch.full((rows, cols), -1, dtype=torch.long)
        owner = torch.full((rows, cols), -1, dtype=torch.long)
        for k in torch.nonzero((size >= low) & (size <= high) & (area > 0)).flatten().tolist():
            cy, cx = int(centre_y[k] // cell), int(centre_x[k] // cell)
            top = max(0, int((centre_y[k] - half_h[k]) // cell), cy - 1)
            bottom = min(rows - 1, int((centre_y[k] + half_h[k]) // cell), cy + 1)
            left = max(0, int((centre_x[k] - half_w[k]) // cell), cx - 1)
            right = min(cols - 1, int((centre_x[k] + half_w[k]) // cell), cx + 1)
            level_labels[top:bottom + 1, left:right + 1] = labels[k]
            owner[top:bottom + 1, left:right + 1] = k
        out.append(LevelTargets(level_labels, owner))
    return out


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Per mask, 1 - 2 sum(p t) / (sum(p^2) + sum(t^2)) with p the sigmoid of ``logits`` (SOLO's Dice loss;
    ``eps`` as MMDetection's ``DiceLoss``).

    >>> float(dice_loss(torch.full((1, 4), 20.0), torch.ones(1, 4))[0]) < 1e-3
    True
    """
    p = logits.flatten(1).sigmoid()
    t = targets.flatten(1).float()
    return 1 - 2 * (p * t).sum(dim=1) / ((p * p).sum(dim=1) + eps + (t * t).sum(dim=1) + eps)


class SOLOv2Head(nn.Module):
    """The location-category and kernel branches (weights shared over the levels) and the mask features."""

    def __init__(self, in_channels: int, num_classes: int, grid_size: int, s: HeadSettings) -> None:
        super().__init__()
        if len(s.num_grids) != len(LEVEL_STRIDES) or len(s.scale_ranges) != len(LEVEL_STRIDES):
            raise ValueError(f"num_grids and scale_ranges need {len(LEVEL_STRIDES)} entries (one per level)")
        self.settings, self.grid_size = s, grid_size
        width = s.head_width
        self.kernel_convs = nn.Sequential(*(_conv_gn(in_channels + 2 if k == 0 else width, width)
                                            for k in range(s.stacked_convs)))
        self.cls_convs = nn.Sequential(*(_conv_gn(in_channels if k == 0 else width, width)
                                         for k in range(s.stacked_convs)))
        self.conv_kernel = nn.Conv2d(width, s.kernel_channels, 3, padding=1)
        self.conv_cls = nn.Conv2d(width, num_classes, 3, padding=1)
        for conv in (self.conv_kernel, self.conv_cls):
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(self.conv_kernel.bias)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - 0.01) / 0.01))  # a prior of 0.01 per class
        self.mask_features = MaskFeatures(in_channels, s.mask_width, s.kernel_channels, grid_size)

    def forward(self, feats: Sequence[torch.Tensor], shape: tuple[int, int]
                ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Per level the kernels (B x E x rows x cols) and class logits (B x C x rows x cols), and the mask
        features (B x E x H/4 x W/4), of FPN levels P2-P6 of an input of ``shape`` (padded, network pixels)."""
        p2, p3, p4, p5, p6 = feats
        mask_feats = self.mask_features([p2, p3, p4, p5])
        levels = [F.interpolate(p2, size=p3.shape[-2:], mode="bilinear", align_corners=False), p3, p4, p5,
                  F.interpolate(p6, size=p5.shape[-2:], mode="bilinear", align_corners=False)]
        kernels, logits = [], []
        for x, stride, cells in zip(levels, LEVEL_STRIDES, self.settings.num_grids, strict=True):
            sampled, coords = self._at_cells(x, stride, cells, shape)
            cls_feat = self.cls_convs(sampled)
            kernel_feat = self.kernel_convs(torch.cat([sampled, coords.expand(len(x), -1, -1, -1)], dim=1))
            kernels.append(self.conv_kernel(kernel_feat))
            logits.append(self.conv_cls(cls_feat))
        return kernels, logits, mask_feats

    def _at_cells(self, x: torch.Tensor, stride: int, cells: int, shape: tuple[int, int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` sampled bilinearly at the centres of the level's grid cells, and the centres' coordinates."""
        rows, cols = grid_shape(*shape, cells, self.grid_size)
        cell = self.grid_size / cells
        ys = (torch.arange(rows, device=x.device, dtype=x.dtype) + 0.5) * cell
        xs = (torch.arange(cols, device=x.device, dtype=x.dtype) + 0.5) * cell
        h, w = x.shape[-2:]
        gy, gx = torch.meshgrid(2 * ys / (stride * h) - 1, 2 * xs / (stride * w) - 1, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)[None].expand(len(x), -1, -1, -1)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled, _coords(ys, xs, self.grid_size)

    def loss(self, kernels: list[torch.Tensor], logits: list[torch.Tensor], mask_feats: torch.Tensor,
             targets: Sequence[dict[str, torch.Tensor]], shape: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Focal loss of the categories and Dice loss of the positives' masks (x ``mask_loss_weight``)."""
        s = self.settings
        mh, mw = mask_feats.shape[-2:]
        dice, flat_logits, flat_labels = [], [], []
        for b, target in enumerate(targets):
            masks = target["masks"]  # at the resized image's size: padded like the input
            masks = F.pad(masks, (0, shape[1] - masks.shape[-1], 0, shape[0] - masks.shape[-2]))
            levels = grid_targets(masks.cpu().bool(), target["boxes"].cpu(), target["labels"].cpu() - 1, shape, s,
                                  grid_size=self.grid_size)
            # the instances at stride 4 (the mask feature's), as MMDetection rescales them
            small = (F.interpolate(masks[None].float().to(mask_feats.device), size=(mh, mw), mode="bilinear",
                                   align_corners=False)[0] >= 0.5) if len(masks) else masks.bool()
            for level, lt in enumerate(levels):
                flat_logits.append(logits[level][b].flatten(1).T)
                flat_labels.append(lt.labels.flatten().to(mask_feats.device))
                positive = lt.owner.flatten() >= 0
                if not positive.any():
                    continue
                weights = kernels[level][b].flatten(1)[:, positive.to(mask_feats.device)].T  # P x E
                predicted = torch.einsum("pe,ehw->phw", weights, mask_feats[b])
                dice.append(dice_loss(predicted, small[lt.owner.flatten()[positive].to(mask_feats.device)]))
        all_logits = torch.cat(flat_logits)
        all_labels = torch.cat(flat_labels)
        n_pos = int((all_labels >= 0).sum())
        onehot = torch.zeros_like(all_logits)
        fg = all_labels >= 0
        onehot[fg, all_labels[fg]] = 1.0
        loss_cls = sigmoid_focal_loss(all_logits, onehot, alpha=s.focal_alpha, gamma=s.focal_gamma,
                                      reduction="sum") / (n_pos + 1)
        loss_mask = (torch.cat(dice).sum() / n_pos if dice else mask_feats.sum() * 0) * s.mask_loss_weight
        return {"loss_cls": loss_cls, "loss_mask": loss_mask}


class SOLOv2(nn.Module):
    """Backbone with FPN, :class:`SOLOv2Head` and torchvision's detection transform (resizing by
    ``scale``, padding to a multiple of 32). In training, ``model(images, targets)`` returns the losses, as a
    torchvision detector does, so the family's loop trains it; in evaluation the head's outputs and the
    transformed images."""

    def __init__(self, backbone: nn.Module, head: SOLOv2Head) -> None:
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        super().__init__()
        self.backbone = backbone
        self.head = head
        # cellbench normalises images itself (percentile); sizes are set by set_input_size
        self.transform = GeneralizedRCNNTransform(800, 1333, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], size_divisible=32)

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> object:
        batch, targets = self.transform(images, targets)
        shape = tuple(batch.tensors.shape[-2:])
        outputs = self.head(list(self.backbone(batch.tensors).values()), shape)
        if self.training:
            if targets is None:
                raise ValueError("SOLOv2 trains on targets (boxes, labels, masks)")
            return self.head.loss(*outputs, targets, shape)
        return outputs, batch


@torch.no_grad()
def predict_masks(kernels: list[torch.Tensor], logits: list[torch.Tensor], mask_feats: torch.Tensor, *,
                  score_threshold: float, mask_threshold: float, update_threshold: float, nms_pre: int,
                  max_instances: int, kernel: str = "gaussian", sigma: float = 2.0, max_candidates: int = 4000,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's instances (batch of one): mask probabilities at stride 4 (K x H/4 x W/4), class indices
    and scores, best first.

    ``max_candidates``: at most this many (cell, class) candidates by category score have their masks
    computed (a bound on memory; MMDetection has none, and Matrix NMS takes the ``nms_pre`` best after).
    """
    scores, weights, strides = [], [], []
    for level, (k, x) in enumerate(zip(kernels, logits, strict=True)):
        prob = x.sigmoid()
        peak = F.max_pool2d(prob, 2, stride=1, padding=1)[..., :-1, :-1]
        prob = prob * (peak == prob)  # a cell's score counts where it is its 2 x 2 neighbourhood's maximum
        scores.append(prob[0].flatten(1).T)  # cells x classes
        weights.append(k[0].flatten(1).T)  # cells x E
        strides.append(torch.full((prob.shape[-2] * prob.shape[-1],), float(LEVEL_STRIDES[level])))
    cell_scores = torch.cat(scores)
    cell, label = torch.nonzero(cell_scores > score_threshold, as_tuple=True)
    score = cell_scores[cell, label]
    if len(score) > max_candidates:
        top = torch.topk(score, max_candidates).indices
        cell, label, score = cell[top], label[top], score[top]
    empty = mask_feats.new_zeros((0, *mask_feats.shape[-2:]))
    if len(score) == 0:
        return empty, label, score
    prob = torch.einsum("ne,ehw->nhw", torch.cat(weights)[cell], mask_feats[0]).sigmoid()
    masks = prob > mask_threshold
    area = masks.flatten(1).sum(dim=1).float()
    big = area > torch.cat(strides).to(area.device)[cell]
    if not big.any():
        return empty, label[:0], score[:0]
    prob, masks, area, label, score = prob[big], masks[big], area[big], label[big], score[big]
    score = score * (prob * masks).flatten(1).sum(dim=1) / area  # maskness
    new, kept = matrix_nms(masks, label, score, kernel=kernel, sigma=sigma, pre=nms_pre, keep=max_instances,
                           update_threshold=update_threshold)
    return prob[kept], label[kept], new
