"""``retinamask``: RetinaMask (Fu, Shvets & Berg 2019), the 18-methods benchmark's "RetinaMask".

RetinaNet (Lin et al. 2017: an FPN, 9 anchors per position, a classification
tower with sigmoid focal loss and a box tower) trained with a Mask R-CNN mask
head on its own detections, which makes a single-shot detector that also
outputs instance masks. Network and losses:
:mod:`~cellbench.methods.adapters.detection.retinanet_head` (anchors, matching,
focal loss, the self-adjusting smooth L1, NMS) and
:mod:`~cellbench.methods.adapters.detection.retinamask_head` (P7, the mask head,
its RoI levels and training boxes). Settings are the paper's (ResNet-50-FPN
P3-P7, anchors 32-512 px x 3 scales x 3 ratios, IoU 0.5 / 0.4 with the best
anchor of each ground truth positive, focal loss alpha 0.25, gamma 2,
self-adjusting smooth L1 with beta at most 0.11, masks trained on up to 100
positive detections per image, score threshold 0.05, NMS 0.5, 100 detections).

What the benchmark ran is DeepCell's ``deepcell-retinamask`` 0.1.1 (TensorFlow;
its licence is a modified Apache 2.0 for non-commercial academic use: read for
its design, no code taken, no dependency). Followed from it: RetinaNet on
P3-P7 (it picks the levels and anchor sizes from the objects' sizes,
``get_anchor_parameters``, as ``pyramid_levels`` / ``anchor_sizes`` let a
config do here), focal loss 0.25 / 2, IoU 0.5 / 0.4, 14 x 14 RoIs, a mask head
of four 256-channel convolutions to 28 x 28 per-class sigmoids, score
threshold 0.05 and NMS 0.5. Left out or done the paper's way instead: its
optional semantic heads (``panoptic``: a pixel-wise segmentation beside the
detections, which its RetinaMask does not need for instance masks); its mask
RoIs all read P3 upsampled to the image size (here the paper's level rule);
it trains the mask head on the ground-truth boxes only (here the paper's
detections, ground truths filling up); it upsamples by bilinear resizing +
convolution where the paper deconvolves (here the deconvolution); its smooth
L1 has a fixed sigma 3 (``box_loss: smooth_l1`` with ``smooth_l1_beta`` 1/9
is that loss).

From the family (:mod:`cellbench.methods.adapters.detection`): the backbones
with their FPN (``resnet50`` as published, ``resnet18`` / ``resnet34`` for CPUs,
and the timm ones; P6 is the FPN's max pool of P5 where RetinaNet convolves
C5, and P7 a stride-2 convolution on ReLU(P6) as RetinaNet), pretrained files
(an ImageNet classifier's loads into the backbone; a whole Mask R-CNN's gives
the backbone and FPN), the random crops, the training loop, validation and the
model directory (``retinamask.pt``, ``retinamask.json``) of
:class:`~cellbench.methods.adapters.detection.maskrcnn.MaskRCNNMethod`. Large
images are predicted in tiles (512 px, 128 overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from cellbench.instances import InstanceSet
from cellbench.methods.adapters.detection.backbones import BACKBONES
from cellbench.methods.adapters.detection.config import DetectorConfig
from cellbench.methods.adapters.detection.maskrcnn import MaskRCNNMethod
from cellbench.methods.device import on_config_threads

__all__ = ["RetinaMaskConfig", "RetinaMaskMethod"]


@dataclass(frozen=True)
class RetinaMaskConfig(DetectorConfig):
    """RetinaMask settings: the family's (:class:`~cellbench.methods.adapters.detection.config.DetectorConfig`:
    backbone, pretrained, the training loop, preprocess, threads), and

    Attributes:
        pyramid_levels: the consecutive FPN levels (2-7, stride ``2^level``) the heads read; RetinaNet's P3-P7.
        anchor_sizes: the anchor side (network pixels) at each of ``pyramid_levels``; each position has it x
            2^0, 2^(1/3), 2^(2/3), at aspect ratios 0.5, 1, 2.
        head_width: channels of the classification and box towers' and the mask head's convolutions.
        stacked_convs: convolutions in each tower.
        focal_alpha, focal_gamma: the classification's focal loss.
        positive_iou, negative_iou: an anchor with IoU >= the first is positive, < the second background (each
            ground truth's best anchors are positive whatever their IoU).
        box_loss: ``self_adjusting`` (RetinaMask's) or ``smooth_l1`` (a fixed beta).
        smooth_l1_beta: the largest beta of the self-adjusting loss; the beta of the fixed one.
        mask_rois: training boxes the mask head sees per image (positive detections, then ground truths).
        mask_iou: IoU with a ground truth a detection needs to train the mask head.
        canonical_level: ``k0`` of the RoI level rule (a 224 px box reads this level).
        max_grad_norm: gradients are clipped to this norm; None: not clipped.
        score_threshold: detections below this score are dropped.
        nms_threshold: IoU of NMS within a class.
        pre_nms: the best (anchor, class) scores per level that NMS ranks.
        detections_per_image: at most this many instances per image (tile).
        mask_threshold: mask probability a pixel needs.
    """

    pyramid_levels: tuple[int, ...] = (3, 4, 5, 6, 7)
    anchor_sizes: tuple[float, ...] = (32, 64, 128, 256, 512)
    head_width: int = 256
    stacked_convs: int = 4
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    positive_iou: float = 0.5
    negative_iou: float = 0.4
    box_loss: Literal["self_adjusting", "smooth_l1"] = "self_adjusting"
    smooth_l1_beta: float = 0.11
    mask_rois: int = 100
    mask_iou: float = 0.5
    canonical_level: int = 4
    max_grad_norm: float | None = None
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    pre_nms: int = 1000
    detections_per_image: int = 100
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        levels = list(self.pyramid_levels)
        if not levels or levels != list(range(levels[0], levels[-1] + 1)) or not 2 <= levels[0] <= levels[-1] <= 7:
            raise ValueError(f"pyramid_levels must be consecutive levels within 2-7, got {levels}")
        if len(self.anchor_sizes) != len(levels) or min(self.anchor_sizes) <= 0:
            raise ValueError(f"anchor_sizes needs one size > 0 per pyramid level ({len(levels)}), got "
                             f"{list(self.anchor_sizes)}")
        if self.box_loss not in ("self_adjusting", "smooth_l1"):
            raise ValueError(f"box_loss must be 'self_adjusting' or 'smooth_l1', got {self.box_loss!r}")
        if not 0 < self.negative_iou <= self.positive_iou <= 1:
            raise ValueError(f"need 0 < negative_iou <= positive_iou <= 1, got {self.negative_iou}, "
                             f"{self.positive_iou}")
        if min(self.head_width, self.stacked_convs, self.mask_rois, self.pre_nms, self.detections_per_image) < 1:
            raise ValueError("head_width, stacked_convs, mask_rois, pre_nms and detections_per_image must be >= 1")
        if not self.smooth_l1_beta > 0:
            raise ValueError(f"smooth_l1_beta must be > 0, got {self.smooth_l1_beta}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}")


class RetinaMaskMethod(MaskRCNNMethod):
    """RetinaMask: RetinaNet's detections, a mask for each; one model for all classes.

    Training, validation and the model directory are :class:`MaskRCNNMethod`'s (the network takes images and
    targets and returns its losses, as a torchvision detector does); the network and prediction are its own.
    """

    name = "retinamask"
    version = "1"
    paper: ClassVar[str] = "RetinaMask"
    description = (f"RetinaMask (the 18-methods paper's row, DeepCell's deepcell-retinamask there): RetinaNet "
                   f"(anchors, focal loss, self-adjusting smooth L1) with a Mask R-CNN mask head trained on its "
                   f"detections; maskrcnn's backbones ({', '.join(BACKBONES)}; resnet50 published)")
    Config = RetinaMaskConfig  # type: ignore[assignment]
    #: ``cpu``: ResNet-18-FPN on 256 px crops with 128-channel heads, 32 mask RoIs per crop, AdamW.
    presets = {"cpu": {"backbone": "resnet18", "patch_size": 256, "batch_size": 2, "head_width": 128,
                       "mask_rois": 32, "optimizer": "adamw", "lr": 0.0005, "weight_decay": 0.0001, "epochs": 30}}
    #: The layers sized by the number of classes.
    class_heads: ClassVar[tuple[str, ...]] = ("head.cls_logits.", "mask_predictor.mask_fcn_logits.")
    #: A Mask R-CNN's file gives the backbone and FPN; its RPN and RoI heads are left out, the heads start new.
    new_heads: ClassVar[tuple[str, ...]] = ("head.", "p7.", "box_loss.", "mask_head.", "mask_predictor.", "rpn.",
                                            "roi_heads.")
    loss_text: ClassVar[str] = ("focal loss of the anchors' classes + self-adjusting smooth L1 of the positives' "
                                "boxes + mask BCE on the detections' boxes (RetinaMask)")

    def _new_model(self, n_classes: int) -> Any:
        """A randomly initialised RetinaMask for ``n_classes`` classes on the configured backbone."""
        from cellbench.methods.adapters.detection.backbones import build_backbone
        from cellbench.methods.adapters.detection.retinamask_head import RetinaMask

        cfg = self.config
        return RetinaMask(build_backbone(cfg.backbone, trainable_layers=cfg.trained_layers), n_classes, cfg)

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """The instances of one image (a tile), scored by the detector, overlaps and classes kept."""
        from cellbench.methods.adapters.detection.inference import box_mask_instances

        return box_mask_instances(self, image)
