"""Cascade Mask R-CNN's RoI heads on torchvision (Cai & Vasconcelos, CVPR 2018 and TPAMI 2019).

One box head trained at IoU 0.5 fits poor proposals well and good ones
badly. The cascade runs three box stages, each on the boxes the one before
refined, trained at rising IoU thresholds (0.5, 0.6, 0.7), so each stage
learns on proposals of the quality it will see. As MMDetection's
``CascadeRoIHead`` (what the 18-methods benchmark ran):

* training: stage t matches its RoIs (the previous stage's refined boxes of
  its sampled RoIs, the ground-truth boxes it added left out, plus the
  ground-truth boxes again) to the ground truth at ``stage_iou[t]``, samples
  ``batch_size_per_image`` of them (a quarter positive at most), and adds its
  classification (cross-entropy) and box (smooth L1, beta 1) losses times
  ``stage_weights[t]`` (1, 0.5, 0.25); its box regression is class-agnostic
  and encoded with the stage's weights, (10, 10, 5, 5), (20, 20, 10, 10) and
  (30, 30, 15, 15) (the inverse of MMDetection's target stds), since the
  deltas shrink as the boxes get better; the refined boxes go on without a
  gradient (:func:`refine_boxes`);
* masks: one mask head per stage (MMDetection's cascade mask configs),
  trained on the stage's positive RoIs with the stage's weight; at prediction
  each runs on the final boxes and their probabilities are averaged;
* prediction: the proposals go through the three stages, each on the
  previous one's refined boxes; a box's class scores are the softmax of the
  mean of the three classifiers' logits (:func:`stage_scores`, MMDetection's
  test: "the ensemble of the classifiers"), its box the last stage's; then
  torchvision's score threshold, NMS per class and top-k.

Each stage's classifier may be MMDetection's ``NormedLinear`` (cosine
similarity x a temperature of 20), as in its seesaw-loss Cascade Mask R-CNN
configs (:class:`NormedLinear`). The box and mask heads of each stage are
cellbench's Mask R-CNN v2 heads (MMDetection's cascade has two fully
connected layers per box stage and no norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.roi_heads import RoIHeads, project_masks_on_boxes
from torchvision.ops import boxes as box_ops

__all__ = ["STAGE_BOX_WEIGHTS", "CascadeRoIHeads", "NormedLinear", "StagePredictor", "cascade_roi_heads",
           "refine_boxes", "stage_box_loss", "stage_scores"]

#: Box coder weights of the three stages (Cai & Vasconcelos; 1 / MMDetection's target stds 0.1 / 0.2,
#: 0.05 / 0.1, 0.033 / 0.067).
STAGE_BOX_WEIGHTS: tuple[tuple[float, float, float, float], ...] = (
    (10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


class NormedLinear(nn.Linear):
    """MMDetection's ``NormedLinear``: the cosine similarity of the input with each weight row, times
    ``temperature``, plus the bias.

    >>> layer = NormedLinear(4, 2, temperature=20.0)
    >>> bool(layer(torch.ones(3, 4)).abs().max() <= 20.0 + layer.bias.abs().max())
    True
    """

    def __init__(self, in_features: int, out_features: int, *, temperature: float = 20.0, eps: float = 1e-6) -> None:
        super().__init__(in_features, out_features)
        self.temperature = temperature
        self.eps = eps
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.eps)
        x = x / (x.norm(dim=1, keepdim=True) + self.eps)
        return F.linear(x * self.temperature, weight, self.bias)


class StagePredictor(nn.Module):
    """One stage's class logits (``num_classes`` with background) and one box regression for every class.

    ``temperature``: a :class:`NormedLinear` classifier; None: a plain linear one.
    """

    def __init__(self, in_features: int, num_classes: int, *, temperature: float | None = None) -> None:
        super().__init__()
        self.cls_score = (nn.Linear(in_features, num_classes) if temperature is None
                          else NormedLinear(in_features, num_classes, temperature=temperature))
        self.bbox_pred = nn.Linear(in_features, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


def stage_scores(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Class probabilities from the stages' logits: the softmax of their mean (MMDetection's cascade test).

    >>> stage_scores([torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, 0.0]])]).tolist()  # mean logits 0, 1
    [[0.2689414322376251, 0.7310585975646973]]
    """
    return F.softmax(torch.stack(list(logits)).mean(0), -1)


def refine_boxes(coder: det_utils.BoxCoder, deltas: torch.Tensor, boxes: Sequence[torch.Tensor],
                 image_shapes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """The boxes ``boxes`` (one tensor per image) moved by ``deltas`` (class-agnostic, N x 4, stacked over the
    images) with ``coder``, clipped to each image, without a gradient: the next stage's proposals.

    >>> coder = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    >>> refine_boxes(coder, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), [torch.tensor([[0.0, 0.0, 10.0, 10.0]])],
    ...              [(20, 20)])[0].tolist()  # moved right by 1 / 10 of its width
    [[1.0, 0.0, 11.0, 10.0]]
    """
    decoded = coder.decode(deltas.detach(), list(boxes)).reshape(-1, 4)
    out = []
    for part, shape in zip(decoded.split([len(b) for b in boxes]), image_shapes, strict=True):
        out.append(box_ops.clip_boxes_to_image(part, shape))
    return out


def stage_box_loss(class_logits: torch.Tensor, deltas: torch.Tensor, labels: Sequence[torch.Tensor],
                   regression_targets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One stage's cross-entropy and class-agnostic smooth L1 (beta 1, MMDetection's cascade) over the
    positive RoIs, divided by the number of sampled RoIs."""
    labels_all = torch.cat(list(labels))
    targets = torch.cat(list(regression_targets))
    loss_cls = F.cross_entropy(class_logits, labels_all)
    positive = torch.where(labels_all > 0)[0]
    loss_box = F.smooth_l1_loss(deltas[positive], targets[positive], beta=1.0, reduction="sum")
    return loss_cls, loss_box / max(1, labels_all.numel())


class CascadeRoIHeads(RoIHeads):
    """Three box stages and three mask heads over torchvision's RoI pooling (see the module docstring).

    ``self.box_coder`` is the last stage's, so torchvision's
    ``postprocess_detections`` decodes the final boxes.
    """

    def __init__(self, box_roi_pool: nn.Module, box_heads: Sequence[nn.Module], box_predictors: Sequence[nn.Module],
                 mask_roi_pool: nn.Module, mask_heads: Sequence[nn.Module], mask_predictors: Sequence[nn.Module], *,
                 stage_iou: Sequence[float] = (0.5, 0.6, 0.7), stage_weights: Sequence[float] = (1.0, 0.5, 0.25),
                 box_weights: Sequence[tuple[float, float, float, float]] = STAGE_BOX_WEIGHTS,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100) -> None:
        n = len(box_heads)
        if not (len(box_predictors) == len(mask_heads) == len(mask_predictors) == len(stage_iou)
                == len(stage_weights) == len(box_weights) == n):
            raise ValueError(f"a cascade needs one of each per stage: {n} box heads, {len(box_predictors)} box "
                             f"predictors, {len(mask_heads)} mask heads, {len(mask_predictors)} mask predictors, "
                             f"{len(stage_iou)} IoU thresholds, {len(stage_weights)} weights, "
                             f"{len(box_weights)} box weights")
        super().__init__(box_roi_pool, None, None, stage_iou[0], stage_iou[0], batch_size_per_image,
                         positive_fraction, tuple(box_weights[-1]), score_thresh, nms_thresh, detections_per_img,
                         mask_roi_pool, None, None)
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.mask_heads = nn.ModuleList(mask_heads)
        self.mask_predictors = nn.ModuleList(mask_predictors)
        self.stage_iou = tuple(float(t) for t in stage_iou)
        self.stage_weights = tuple(float(w) for w in stage_weights)
        self.matchers = [det_utils.Matcher(t, t, allow_low_quality_matches=False) for t in self.stage_iou]
        self.coders = [det_utils.BoxCoder(tuple(w)) for w in box_weights]

    @property
    def num_stages(self) -> int:
        return len(self.box_heads)

    # -- training -------------------------------------------------------------------
    def sample(self, stage: int, proposals: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]],
               ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor],
                          list[torch.Tensor]]:
        """Stage ``stage``'s training RoIs per image: ``proposals`` and the ground-truth boxes, matched at the
        stage's IoU threshold and sampled; returns the RoIs, their matched instance, label (0: background),
        regression target (the stage's coder) and whether each RoI is a ground-truth box."""
        matcher = self.matchers[stage]
        rois, matched, labels, from_gt = [], [], [], []
        for props, target in zip(proposals, targets, strict=True):
            gt_boxes = target["boxes"].to(props.dtype)
            boxes = torch.cat([props, gt_boxes])
            is_gt = torch.cat([torch.zeros(len(props), dtype=torch.bool, device=props.device),
                               torch.ones(len(gt_boxes), dtype=torch.bool, device=props.device)])
            if gt_boxes.numel() == 0:
                index = torch.zeros(len(boxes), dtype=torch.int64, device=props.device)
                label = torch.zeros(len(boxes), dtype=torch.int64, device=props.device)
            else:
                found = matcher(box_ops.box_iou(gt_boxes, boxes))
                index = found.clamp(min=0)
                label = target["labels"][index].to(torch.int64)
                label[found == matcher.BELOW_LOW_THRESHOLD] = 0
                label[found == matcher.BETWEEN_THRESHOLDS] = -1  # none when both thresholds are the stage's
            rois.append(boxes), matched.append(index), labels.append(label), from_gt.append(is_gt)
        for k, keep in enumerate(self.subsample(labels)):
            rois[k], matched[k] = rois[k][keep], matched[k][keep]
            labels[k], from_gt[k] = labels[k][keep], from_gt[k][keep]
        matched_boxes = [t["boxes"].to(r.dtype)[m] if t["boxes"].numel() else torch.zeros_like(r)
                         for t, r, m in zip(targets, rois, matched, strict=True)]
        regression = list(self.coders[stage].encode(matched_boxes, rois))
        return rois, matched, labels, regression, from_gt

    def _stage(self, stage: int, features: dict[str, torch.Tensor], boxes: Sequence[torch.Tensor],
               image_shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.box_heads[stage](self.box_roi_pool(features, list(boxes), image_shapes))
        return self.box_predictors[stage](x)

    def _mask_logits(self, stage: int, rois: torch.Tensor) -> torch.Tensor:
        return self.mask_predictors[stage](self.mask_heads[stage](rois))

    def _train(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
               image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        for stage in range(self.num_stages):
            rois, matched, labels, regression, from_gt = self.sample(stage, proposals, targets)
            logits, deltas = self._stage(stage, features, rois, image_shapes)
            loss_cls, loss_box = stage_box_loss(logits, deltas, labels, regression)
            weight = self.stage_weights[stage]
            # masks: the stage's positive RoIs
            positive = [torch.where(lab > 0)[0] for lab in labels]
            mask_boxes = [r[k] for r, k in zip(rois, positive, strict=True)]
            gt_index = [m[k] for m, k in zip(matched, positive, strict=True)]
            mask_logits = self._mask_logits(stage, self.mask_roi_pool(features, mask_boxes, image_shapes))
            gt_labels = torch.cat([t["labels"][i] for t, i in zip(targets, gt_index, strict=True)])
            mask_targets = torch.cat([project_masks_on_boxes(t["masks"], b, i, mask_logits.shape[-1])
                                      for t, b, i in zip(targets, mask_boxes, gt_index, strict=True)])
            if mask_targets.numel() == 0:
                loss_mask = mask_logits.sum() * 0
            else:
                chosen = mask_logits[torch.arange(len(gt_labels), device=gt_labels.device), gt_labels]
                loss_mask = F.binary_cross_entropy_with_logits(chosen, mask_targets)
            name = f"stage{stage + 1}"
            losses |= {f"loss_classifier_{name}": weight * loss_cls, f"loss_box_reg_{name}": weight * loss_box,
                       f"loss_mask_{name}": weight * loss_mask}
            if stage < self.num_stages - 1:  # the next stage's proposals: this one's refined RoIs, not the gt boxes
                refined = refine_boxes(self.coders[stage], deltas, rois, image_shapes)
                proposals = [r[~g] for r, g in zip(refined, from_gt, strict=True)]
        return losses

    # -- prediction -----------------------------------------------------------------
    def _predict(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                 image_shapes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        boxes = proposals
        logits = []
        for stage in range(self.num_stages):
            stage_logits, deltas = self._stage(stage, features, boxes, image_shapes)
            logits.append(stage_logits)
            if stage < self.num_stages - 1:
                boxes = refine_boxes(self.coders[stage], deltas, boxes, image_shapes)
        # torchvision's postprocessing softmaxes the mean logits (stage_scores) and decodes the last stage's
        # deltas (one per class: the same for each) with the last stage's coder
        n_classes = logits[-1].shape[-1]
        mean_logits = torch.stack(logits).mean(0)
        found_boxes, found_scores, found_labels = self.postprocess_detections(
            mean_logits, deltas.repeat(1, n_classes), list(boxes), image_shapes)
        rois = self.mask_roi_pool(features, found_boxes, image_shapes)
        flat = torch.cat(found_labels)
        index = torch.arange(len(flat), device=flat.device)
        probs = torch.stack([self._mask_logits(s, rois)[index, flat].sigmoid() for s in range(self.num_stages)])
        masks = probs.mean(0)[:, None].split([len(b) for b in found_boxes])
        return [{"boxes": b, "labels": lab, "scores": s, "masks": m}
                for b, s, lab, m in zip(found_boxes, found_scores, found_labels, masks, strict=True)]

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]] | None = None,
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            self.check_targets(targets)
            return [], self._train(features, proposals, image_shapes, targets)
        return self._predict(features, proposals, image_shapes), {}


def cascade_roi_heads(in_channels: int, num_classes: int, *, head_width: int, roi_batch_size: int,
                      score_threshold: float, nms_threshold: float, detections_per_image: int,
                      stage_iou: Sequence[float] = (0.5, 0.6, 0.7), stage_weights: Sequence[float] = (1.0, 0.5, 0.25),
                      temperature: float | None = 20.0) -> CascadeRoIHeads:
    """Cascade heads on ``in_channels`` FPN features for ``num_classes`` classes (with background): per stage a
    v2 box head, a :class:`StagePredictor` and a v2 mask head with its predictor, built stage by stage;
    torchvision's RoI pooling (7 x 7 for boxes, 14 x 14 for masks, FPN levels P2-P5)."""
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    from cellbench.methods.adapters.detection.maskrcnn import box_head_v2, mask_head_v2

    levels = ["0", "1", "2", "3"]
    box_heads, box_predictors, mask_heads, mask_predictors = [], [], [], []
    for _ in stage_iou:
        box_heads.append(box_head_v2(in_channels, head_width))
        box_predictors.append(StagePredictor(1024, num_classes, temperature=temperature))
        mask_heads.append(mask_head_v2(in_channels, head_width))
        mask_predictors.append(MaskRCNNPredictor(head_width, head_width, num_classes))
    return CascadeRoIHeads(
        MultiScaleRoIAlign(levels, 7, 2), box_heads, box_predictors, MultiScaleRoIAlign(levels, 14, 2), mask_heads,
        mask_predictors, stage_iou=stage_iou, stage_weights=stage_weights,
        box_weights=STAGE_BOX_WEIGHTS[:len(stage_iou)], batch_size_per_image=roi_batch_size,
        score_thresh=score_threshold, nms_thresh=nms_threshold, detections_per_img=detections_per_image)
