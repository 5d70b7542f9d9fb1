"""MS R-CNN's MaskIoU head (Huang et al., CVPR 2019) and the torchvision RoI heads that carry it.

Mask R-CNN ranks its masks by the box classifier's score, which says how sure
the network is that a box holds an object, not how good its mask is. The
MaskIoU head regresses the IoU of each predicted mask with its ground truth,
and a detection is scored by ``classification score x predicted mask IoU``.
It follows the paper and MMDetection 2.28's ``MaskIoUHead`` (what the
18-methods benchmark ran):

* input: the 14 x 14 RoIAlign features of a RoI (the mask head's input)
  concatenated with its predicted 28 x 28 mask (the probability of the RoI's
  class) max-pooled to 14 x 14;
* four 3 x 3 convolutions (the last with stride 2, to 7 x 7) and three fully
  connected layers (1024, 1024, one IoU per class), ReLU between, no norm;
* target: the IoU of the predicted mask, binarised, with the matched
  ground-truth mask, both at 28 x 28 in the RoI; the ground truth's area is its
  whole instance's (its area in the RoI divided by the fraction of the
  instance's pixels the RoI holds), so a mask cut off by its box is penalised
  (:func:`mask_iou_targets`, :func:`area_fractions`);
* loss: mean squared error on the positive RoIs whose target is above 0, times
  a weight (MMDetection's 0.5); its gradient reaches the mask head through the
  mask input, as in both reference implementations;
* prediction: the head runs on the final detections and multiplies each score
  by the IoU predicted for its class (:func:`mask_scores`).

Where this differs: the target binarises the mask *probability* at the mask
threshold (0.5); the authors' code and MMDetection compare the mask *logit*
with 0.5 (a slip the authors acknowledged, zjhuang22/maskscoring_rcnn issue
48). The predicted IoU is clipped to [0, 1] before it multiplies the score
(the references use the linear output as is; a negative value would give a
negative score).
"""


from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, project_masks_on_boxes

__all__ = ["MaskIoUHead", "MaskScoringRoIHeads", "area_fractions", "mask_iou_targets", "mask_scores"]


class MaskIoUHead(nn.Module):
    """Predicts, per class, the IoU of a RoI's predicted mask with its ground truth (MMDetection's ``MaskIoUHead``).

    ``forward(features, mask_logits)``: ``features`` N x C x 14 x 14 (RoIAlign),
    ``mask_logits`` N x 28 x 28 (one class's mask); returns N x ``num_classes``.

    >>> head = MaskIoUHead(8, 2, width=4, fc_width=16)
    >>> head(torch.zeros(3, 8, 14, 14), torch.zeros(3, 28, 28)).shape
    torch.Size([3, 2])
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 256, fc_width: int = 1024,
                 roi_size: int = 14) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels + 1 if k == 0 else width, width, 3, stride=2 if k == 3 else 1, padding=1)
            for k in range(4))
        pooled = (roi_size // 2) ** 2
        self.fcs = nn.ModuleList([nn.Linear(width * pooled, fc_width), nn.Linear(fc_width, fc_width)])
        self.fc_mask_iou = nn.Linear(fc_width, num_classes)
        # MMDetection's initialisation
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for fc in self.fcs:
            nn.init.kaiming_uniform_(fc.weight, a=1, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.fc_mask_iou.weight, std=0.01)
        nn.init.zeros_(self.fc_mask_iou.bias)

    def forward(self, features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        mask = F.max_pool2d(mask_logits.sigmoid()[:, None], 2, 2)
        x = torch.cat([features, mask], dim=1)
        for conv in self.convs:
            x = F.relu(conv(x))
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return self.fc_mask_iou(x)


def area_fractions(gt_masks: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
    """The fraction of each matched ground-truth instance's pixels that lie in its RoI.

    ``gt_masks``: G x H x W (one image's instances), ``boxes``: N x 4 RoIs
    (x0, y0, x1, y1), ``matched``: the instance of each RoI. The RoI covers the
    pixels ``[int(y0), int(y0) + max(int(y1) - int(y0), 1))`` and likewise in x,
    as MMDetection crops a bitmap mask by a box.

    >>> m = torch.zeros(1, 8, 8); m[0, 2:6, 2:6] = 1
    >>> area_fractions(m, torch.tensor([[2.0, 2.0, 6.0, 4.0]]), torch.tensor([0])).tolist()
    [0.5]
    """
    h, w = gt_masks.shape[-2:]
    table = F.pad(gt_masks.to(torch.int64).cumsum(-1).cumsum(-2), (1, 0, 1, 0))  # summed-area table
    b = boxes.detach().to(torch.int64)
    x0, x1 = b[:, 0].clamp(0, w), b[:, 2].clamp(0, w)
    y0, y1 = b[:, 1].clamp(0, h), b[:, 3].clamp(0, h)
    x1 = (x0 + (x1 - x0).clamp(min=1)).clamp(max=w)
    y1 = (y0 + (y1 - y0).clamp(min=1)).clamp(max=h)
    t, g = table, matched
    inside = t[g, y1, x1] - t[g, y0, x1] - t[g, y1, x0] + t[g, y0, x0]
    whole = t[g, h, w]
    return inside.to(torch.float32) / whole.clamp(min=1).to(torch.float32)


def mask_iou_targets(mask_probs: torch.Tensor, mask_targets: torch.Tensor, fractions: torch.Tensor, *,
                     threshold: float = 0.5) -> torch.Tensor:
    """The IoU of each predicted mask (M x M probabilities, binarised at ``threshold``) with its ground truth
    (M x M in the same RoI, binarised at 0.5 as MMDetection's mask targets: torchvision's RoIAlign leaves soft
    values at the edges), the ground truth's area being its whole instance's: its area in the RoI divided by
    ``fractions`` (:func:`area_fractions`).

    >>> probs = torch.zeros(1, 4, 4); probs[0, :, :2] = 0.9            # the left half predicted
    >>> mask_iou_targets(probs, torch.ones(1, 4, 4), torch.tensor([1.0])).tolist()
    [0.5]
    >>> mask_iou_targets(torch.ones(1, 4, 4), torch.ones(1, 4, 4), torch.tensor([0.5])).tolist()  # half outside
    [0.5]
    """
    pred = (mask_probs > threshold).to(torch.float32)
    target = (mask_targets >= 0.5).to(torch.float32)
    overlap = (pred * target).sum((-2, -1))
    whole = target.sum((-2, -1)) / fractions.clamp(min=1e-7)
    union = pred.sum((-2, -1)) + whole - overlap
    return overlap / union.clamp(min=1e-7)


def mask_scores(scores: torch.Tensor, mask_iou: torch.Tensor) -> torch.Tensor:
    """MS R-CNN's detection score: the classification score times the predicted mask IoU (clipped to [0, 1]).

    >>> mask_scores(torch.tensor([0.9, 0.8]), torch.tensor([0.5, 1.2])).tolist()
    [0.44999998807907104, 0.800000011920929]
    """
    return scores * mask_iou.clamp(0.0, 1.0)


class MaskScoringRoIHeads(RoIHeads):
    """torchvision's Mask R-CNN RoI heads (``heads``' modules and settings, taken over) plus a MaskIoU head.

    In training the losses are Mask R-CNN's and ``loss_mask_iou``; at
    prediction each detection's ``scores`` are rescored by :func:`mask_scores`
    (``box_scores`` and ``mask_iou`` keep the two factors).
    """

    def __init__(self, heads: RoIHeads, mask_iou_head: MaskIoUHead, *, loss_weight: float = 0.5,
                 mask_threshold: float = 0.5) -> None:
        matcher, sampler = heads.proposal_matcher, heads.fg_bg_sampler
        super().__init__(
            heads.box_roi_pool, heads.box_head, heads.box_predictor, matcher.high_threshold, matcher.low_threshold,
            sampler.batch_size_per_image, sampler.positive_fraction, heads.box_coder.weights, heads.score_thresh,
            heads.nms_thresh, heads.detections_per_img, heads.mask_roi_pool, heads.mask_head, heads.mask_predictor)
        self.mask_iou_head = mask_iou_head
        self.loss_weight = loss_weight
        self.mask_threshold = mask_threshold

    def _masks(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
               image_shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """RoIAlign features of ``boxes`` (the MaskIoU head's input too) and the mask logits."""
        rois = self.mask_roi_pool(features, boxes, image_shapes)
        return rois, self.mask_predictor(self.mask_head(rois))

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]] | None = None,
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            return [], self._losses(features, proposals, image_shapes, targets, matched_idxs, labels,
                                    class_logits, box_regression, regression_targets)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        rois, mask_logits = self._masks(features, boxes, image_shapes)
        flat = torch.cat(labels)
        index = torch.arange(len(flat), device=flat.device)
        chosen = mask_logits[index, flat]
        iou = self.mask_iou_head(rois, chosen)[index, flat]
        result = []
        for b, s, lab, m, i in zip(boxes, scores, labels, chosen.sigmoid()[:, None].split([len(b) for b in boxes]),
                                   iou.split([len(b) for b in boxes]), strict=True):
            result.append({"boxes": b, "labels": lab, "scores": mask_scores(s, i), "masks": m, "box_scores": s,
                           "mask_iou": i})
        return result, {}

    def _losses(self, features, proposals, image_shapes, targets, matched_idxs, labels, class_logits,
                box_regression, regression_targets) -> dict[str, torch.Tensor]:
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        positive = [torch.where(lab > 0)[0] for lab in labels]
        rois_boxes = [p[k] for p, k in zip(proposals, positive, strict=True)]
        gt_index = [m[k] for m, k in zip(matched_idxs, positive, strict=True)]
        rois, mask_logits = self._masks(features, rois_boxes, image_shapes)
        size = mask_logits.shape[-1]
        gt_labels = torch.cat([t["labels"][i] for t, i in zip(targets, gt_index, strict=True)])
        mask_targets = torch.cat([project_masks_on_boxes(t["masks"], b, i, size)
                                  for t, b, i in zip(targets, rois_boxes, gt_index, strict=True)])
        if mask_targets.numel() == 0:  # no positive RoI
            zero = mask_logits.sum() * 0
            return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": zero,
                    "loss_mask_iou": zero}
        index = torch.arange(len(gt_labels), device=gt_labels.device)
        chosen = mask_logits[index, gt_labels]
        loss_mask = F.binary_cross_entropy_with_logits(chosen, mask_targets)  # torchvision's maskrcnn_loss
        fractions = torch.cat([area_fractions(t["masks"], b, i)
                               for t, b, i in zip(targets, rois_boxes, gt_index, strict=True)])
        iou_targets = mask_iou_targets(chosen.detach().sigmoid(), mask_targets, fractions.to(chosen.device),
                                       threshold=self.mask_threshold)
        predicted = self.mask_iou_head(rois, chosen)[index, gt_labels]
        kept = iou_targets > 0
        loss_iou = F.mse_loss(predicted[kept], iou_targets[kept]) if kept.any() else predicted.sum() * 0
        return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss_mask,
                "loss_mask_iou": self.loss_weight * loss_iou}
