"""``msrcnn``: Mask Scoring R-CNN (Huang et al., CVPR 2019), the 18-methods benchmark's "MS RCNN".

Mask R-CNN with a MaskIoU head (:mod:`~cellbench.methods.adapters.detection.maskiou_head`):
the head regresses the IoU of each predicted mask with its ground truth, and
a detection's score, the one COCO metrics rank by, is its classification
score x its predicted mask IoU, so that well-segmented cells rank above
badly segmented ones the classifier is just as sure of.

Everything else is :mod:`~cellbench.methods.adapters.detection.maskrcnn`'s: the
backbones, the RPN and the v2 box and mask heads (built in the same order, so
a seed gives the same initial weights there; MMDetection's MS R-CNN has a box
head of two fully connected layers), the training loop
(:func:`~cellbench.methods.adapters.detection.training.train_detector`: the MaskIoU
loss is one more term of the sum), prediction
(:func:`~cellbench.methods.adapters.detection.inference.detect`), validation and the
model directory (``msrcnn.pt``, ``msrcnn.json``). ``pretrained`` may name a
whole Mask R-CNN's file (COCO's): everything loads but the MaskIoU head,
which starts new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from cellbench.methods.adapters.detection.maskrcnn import CLASS_HEADS, MaskRCNNConfig, MaskRCNNMethod, build_network

__all__ = ["MSRCNNConfig", "MSRCNNMethod"]


@dataclass(frozen=True)
class MSRCNNConfig(MaskRCNNConfig):
    """MS R-CNN settings: Mask R-CNN's (:class:`~cellbench.methods.adapters.detection.maskrcnn.MaskRCNNConfig`), and

    Attributes:
        mask_iou_loss_weight: weight of the MaskIoU head's squared error (MMDetection's 0.5).

    ``score_threshold`` drops detections by their classification score, before
    the rescoring (as MMDetection does); ``mask_threshold`` binarises the
    predicted masks for the IoU targets too (0.5 in the paper).
    """

    mask_iou_loss_weight: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mask_iou_loss_weight >= 0:
            raise ValueError(f"mask_iou_loss_weight must be >= 0, got {self.mask_iou_loss_weight}")


class MSRCNNMethod(MaskRCNNMethod):
    """MS R-CNN: Mask R-CNN whose detections are scored by classification score x predicted mask IoU."""

    name = "msrcnn"
    version = "1"
    paper: ClassVar[str] = "MS R-CNN"
    description = ("MS RCNN (Mask Scoring R-CNN, the 18-methods paper's row): Mask R-CNN plus a MaskIoU head, a "
                   "detection scored by its class score x its predicted mask IoU; maskrcnn's backbones")
    Config = MSRCNNConfig
    #: ``cpu``: maskrcnn's (ResNet-18-FPN on 256 px crops, AdamW, 128 sampled RoIs per crop).
    presets = {"cpu": dict(MaskRCNNMethod.presets["cpu"])}
    class_heads: ClassVar[tuple[str, ...]] = (*CLASS_HEADS, "roi_heads.mask_iou_head.fc_mask_iou.")
    new_heads: ClassVar[tuple[str, ...]] = ("roi_heads.mask_iou_head.",)
    loss_text: ClassVar[str] = ("RPN objectness + box, RoI classifier + box, mask BCE (torchvision Mask R-CNN), "
                                "MaskIoU squared error x mask_iou_loss_weight")

    def _new_model(self, n_classes: int) -> Any:
        """Mask R-CNN's network, its RoI heads extended by a MaskIoU head (built last)."""
        from cellbench.methods.adapters.detection.maskiou_head import MaskIoUHead, MaskScoringRoIHeads

        cfg = self.config
        model = build_network(self._settings(n_classes))
        head = MaskIoUHead(model.backbone.out_channels, n_classes + 1, width=cfg.head_width)
        model.roi_heads = MaskScoringRoIHeads(model.roi_heads, head, loss_weight=cfg.mask_iou_loss_weight,
                                              mask_threshold=cfg.mask_threshold)
        return model
