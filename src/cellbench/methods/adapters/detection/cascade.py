"""``cascade``: Cascade Mask R-CNN (Cai & Vasconcelos 2018 / 2019), the 18-methods benchmark's "Cascade Mask RCNN
seesaw".

Three box stages, each refining the boxes of the one before and trained at a
higher IoU threshold (0.5, 0.6, 0.7; loss weights 1, 0.5, 0.25), a mask head
per stage, and at prediction the three classifiers' scores averaged and the
last stage's boxes (:mod:`~cellbench.methods.adapters.detection.cascade_heads`).
Backbone, FPN, RPN, the training loop
(:func:`~cellbench.methods.adapters.detection.training.train_detector`; the stage
weights are inside the heads' losses, which the loop sums), prediction
(:func:`~cellbench.methods.adapters.detection.inference.detect`), validation and the
model directory (``cascade.pt``, ``cascade.json``) are Mask R-CNN's
(:mod:`~cellbench.methods.adapters.detection.maskrcnn`).

The benchmark ran MMDetection's Cascade Mask R-CNN with the seesaw loss
(Wang et al., CVPR 2021) and a cosine classifier (``NormedLinear``,
temperature 20; ``classifier_temperature`` here). Seesaw reweights the
cross-entropy's negative terms *between foreground classes* (by their
sample counts and by how far a wrong class's score passes the true one's) and
learns foreground against background with a separate objectness term; with
ONE class there is no other class to reweight, and the loss is exactly the
cross-entropy of object against background, which is what this method trains.
On a task of several classes (Glioma C6 cell types) it also trains the plain
cross-entropy: seesaw's reweighting is not implemented.

``pretrained`` may name a whole Mask R-CNN's file (COCO's): its backbone and
RPN load, and the three stages start new (their parameters have other names
and shapes); an ImageNet classifier's file loads into the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from cellbench.methods.adapters.detection.maskrcnn import MaskRCNNConfig, MaskRCNNMethod, build_network

__all__ = ["CascadeConfig", "CascadeMethod"]


@dataclass(frozen=True)
class CascadeConfig(MaskRCNNConfig):
    """Cascade Mask R-CNN settings: Mask R-CNN's (:class:`~cellbench.methods.adapters.detection.maskrcnn.MaskRCNNConfig`),
    and

    Attributes:
        stage_iou: the IoU with a ground-truth box a RoI needs to be a positive of each of the three stages
            (below it, background); 0.5, 0.6, 0.7 as published.
        stage_weights: each stage's loss weight (1, 0.5, 0.25).
        classifier_temperature: each stage's classifier is a cosine classifier with this temperature
            (MMDetection's ``NormedLinear``, 20 in the seesaw configs); None: a plain linear layer.

    ``roi_batch_size`` is sampled per stage; ``score_threshold`` applies to the averaged scores.
    """

    stage_iou: tuple[float, ...] = (0.5, 0.6, 0.7)
    stage_weights: tuple[float, ...] = (1.0, 0.5, 0.25)
    classifier_temperature: float | None = 20.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.stage_iou) != 3 or len(self.stage_weights) != 3:
            raise ValueError(f"stage_iou and stage_weights need 3 values (one per stage), got {list(self.stage_iou)} "
                             f"and {list(self.stage_weights)}")
        if not all(0 < t < 1 for t in self.stage_iou) or list(self.stage_iou) != sorted(self.stage_iou):
            raise ValueError(f"stage_iou must rise within (0, 1), got {list(self.stage_iou)}")
        if not all(w >= 0 for w in self.stage_weights):
            raise ValueError(f"stage_weights must be >= 0, got {list(self.stage_weights)}")
        if self.classifier_temperature is not None and not self.classifier_temperature > 0:
            raise ValueError(f"classifier_temperature must be > 0 or null, got {self.classifier_temperature}")


class CascadeMethod(MaskRCNNMethod):
    """Cascade Mask R-CNN: three box stages at rising IoU, a mask head per stage, the stages' scores averaged."""

    name = "cascade"
    version = "1"
    paper: ClassVar[str] = "Cascade Mask R-CNN"
    description = ("Cascade Mask RCNN seesaw (the 18-methods paper's row): 3 box stages at IoU 0.5 / 0.6 / 0.7, each "
                   "refining the last one's boxes, a mask head per stage, scores averaged over the stages; the seesaw "
                   "loss is the cross-entropy trained here with one class (several classes: plain cross-entropy); "
                   "maskrcnn's backbones")
    Config = CascadeConfig
    #: ``cpu``: maskrcnn's (ResNet-18-FPN on 256 px crops, AdamW, 128 sampled RoIs per crop and stage).
    presets = {"cpu": dict(MaskRCNNMethod.presets["cpu"])}
    class_heads: ClassVar[tuple[str, ...]] = tuple(
        f"roi_heads.{part}.{k}.{layer}." for k in range(3)
        for part, layer in (("box_predictors", "cls_score"), ("mask_predictors", "mask_fcn_logits")))
    #: A Mask R-CNN's file gives the backbone and the RPN; the cascade's heads start new.
    new_heads: ClassVar[tuple[str, ...]] = ("roi_heads.",)
    loss_text: ClassVar[str] = ("RPN objectness + box; per stage (x 1, 0.5, 0.25): RoI cross-entropy, "
                                "class-agnostic smooth L1 box, mask BCE")

    def _new_model(self, n_classes: int) -> Any:
        """Mask R-CNN's backbone, RPN and transform around the cascade's RoI heads."""
        from cellbench.methods.adapters.detection.cascade_heads import cascade_roi_heads

        cfg = self.config
        s = self._settings(n_classes)

        def heads(channels: int) -> Any:
            return cascade_roi_heads(
                channels, s.num_classes, head_width=s.head_width, roi_batch_size=s.roi_batch_size,
                score_threshold=s.score_threshold, nms_threshold=s.nms_threshold,
                detections_per_image=s.detections_per_image, stage_iou=cfg.stage_iou,
                stage_weights=cfg.stage_weights, temperature=cfg.classifier_temperature)

        return build_network(s, roi_heads=heads)
