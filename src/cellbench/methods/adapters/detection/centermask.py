"""``centermask2``: CenterMask (Lee and Park, CVPR 2020), the 18-methods benchmark's "Centermask2".

An anchor-free single-stage detector with a mask branch: FCOS
(:mod:`~cellbench.methods.adapters.detection.fcos_head`) finds the boxes and
the spatial attention-guided mask head
(:mod:`~cellbench.methods.adapters.detection.sag_mask_head`) segments each
one from the FPN level CenterMask's adaptive rule assigns it; the network
that joins them is :class:`~cellbench.methods.adapters.detection.centermask_net.CenterMaskNet`. The benchmark
ran CenterMask2 (the authors' detectron2 re-implementation) on VoVNetV2-39;
here the backbone is the family's (``vovnet39``, timm's ``ese_vovnet39b``, as
published; ``resnet18`` / ``resnet34`` / ``resnet50`` and the others of
:mod:`.backbones` too) under the family's FPN (batch norm in it, as
torchvision's v2 detectors; its P2 available to the mask head). The optional
MaskIoU scoring head of the paper is left out: scores are FCOS's.

Written from the CenterMask and FCOS papers; the settings were checked against
centermask2's configuration files of its Apache-2.0 releases (2020; the
repository has been under CC BY-NC 4.0 since June 2021). No code of
centermask2, AdelaiDet or detectron2 is used.

Training: the network's losses (FCOS's focal, GIoU and centerness losses, the
mask head's cross-entropy on the detector's own proposals plus the
ground-truth boxes) summed with equal weights through the family's loop
(:func:`~cellbench.methods.adapters.detection.training.train_detector`),
with its crops, schedule, validation and checkpoints; pretrained files and
the model directory (``centermask2.pt``, ``centermask2.json``) are
:class:`~cellbench.methods.adapters.detection.maskrcnn.MaskRCNNMethod`'s (an
ImageNet classifier of the backbone, or a whole Mask R-CNN's backbone and
FPN). Prediction: the best ``detections_per_image`` boxes after NMS, each
with its 28 x 28 mask pasted in its box. Whole images are predicted in tiles
of the training crop (:meth:`CenterMaskMethod.tiling_defaults`): the mask
level of a box depends on the input's area, so a tile gives the levels a
crop gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cellbench.instances import InstanceSet
from cellbench.methods.adapters.detection.backbones import BACKBONES
from cellbench.methods.adapters.detection.config import DetectorConfig
from cellbench.methods.adapters.detection.maskrcnn import MaskRCNNMethod
from cellbench.methods.device import on_config_threads

__all__ = ["CenterMaskConfig", "CenterMaskMethod"]


@dataclass(frozen=True)
class CenterMaskConfig(DetectorConfig):
    """CenterMask settings: the family's (:class:`~cellbench.methods.adapters.detection.config.DetectorConfig`:
    backbone, pretrained, the training loop, preprocess, threads), and (CenterMask2's config names in brackets)

    Attributes:
        head_width: channels of FCOS's towers (256).
        stacked_convs: convolutions in each tower (FCOS.NUM_CONVS, 4).
        center_radius: strides around a box's centre whose locations are positives (FCOS.POS_RADIUS, 1.5).
        focal_alpha, focal_gamma: FCOS's focal loss (0.25, 2).
        score_threshold: class probability a location needs to become a detection (FCOS.INFERENCE_TH_TEST).
        pre_nms: detections kept per level before NMS, by probability x centerness (FCOS.PRE_NMS_TOPK).
        nms_threshold: box IoU of NMS within a class (FCOS.NMS_TH, 0.6).
        detections_per_image: at most this many detections per image (tile) (FCOS.POST_NMS_TOPK_TEST: 100;
            CenterMask2's VoVNet configs set 50).
        train_proposals: the detector's best boxes after NMS given to the mask head in training, before the
            ground-truth boxes are added (FCOS.POST_NMS_TOPK_TRAIN, 100).
        output_threshold: score (square root of probability x centerness) a detection needs to be output;
            0 as published (every detection, which COCO AP ranks; F1 counts the low-scored ones as false).
        mask_width: channels of the mask head's convolutions (ROI_MASK_HEAD.CONV_DIM, 256).
        mask_levels: FPN levels the boxes' features are pooled from, lowest and highest (P3-P5 as published;
            2 admits the family's stride-4 P2).
        mask_batch_size: positive proposals per image the mask loss samples (detectron2's 512 proposals x 0.25
            positives: at most 128).
        mask_threshold: mask probability a pixel needs.
    """

    backbone: str = "vovnet39"
    head_width: int = 256
    stacked_convs: int = 4
    center_radius: float = 1.5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    score_threshold: float = 0.05
    pre_nms: int = 1000
    nms_threshold: float = 0.6
    detections_per_image: int = 100
    train_proposals: int = 100
    output_threshold: float = 0.0
    mask_width: int = 256
    mask_levels: tuple[int, int] = (3, 5)
    mask_batch_size: int = 128
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        # a config file gives a list; the config is frozen and compares equal to its defaults' form
        object.__setattr__(self, "mask_levels", tuple(self.mask_levels))
        if len(self.mask_levels) != 2 or not 2 <= self.mask_levels[0] <= self.mask_levels[1] <= 5:
            raise ValueError(f"mask_levels is [low, high] within P2-P5 (2 <= low <= high <= 5), got "
                             f"{list(self.mask_levels)}")
        if min(self.head_width, self.stacked_convs, self.pre_nms, self.detections_per_image, self.train_proposals,
               self.mask_width, self.mask_batch_size) < 1:
            raise ValueError("head_width, stacked_convs, pre_nms, detections_per_image, train_proposals, mask_width "
                             "and mask_batch_size must be >= 1")
        if not self.center_radius > 0:
            raise ValueError(f"center_radius must be > 0, got {self.center_radius}")


class CenterMaskMethod(MaskRCNNMethod):
    """CenterMask: FCOS boxes, SAG-Mask masks; one model for all classes.

    Training, validation and the model directory are :class:`MaskRCNNMethod`'s (the network takes images and
    targets and returns its losses, as a torchvision detector does); the network and prediction are its own.
    """

    name = "centermask2"
    version = "1"
    paper: ClassVar[str] = "CenterMask"
    description = (f"CenterMask (the 18-methods paper's Centermask2): FCOS anchor-free boxes, spatial "
                   f"attention-guided mask head on the adaptively assigned FPN level; maskrcnn's backbones "
                   f"({', '.join(BACKBONES)}; vovnet39 published)")
    Config = CenterMaskConfig  # type: ignore[assignment]
    #: ``cpu``: ResNet-18-FPN on 256 px crops with 128-channel towers and mask head, AdamW.
    presets = {"cpu": {"backbone": "resnet18", "patch_size": 256, "batch_size": 2, "head_width": 128,
                       "mask_width": 128, "mask_batch_size": 32, "optimizer": "adamw", "lr": 0.0005,
                       "weight_decay": 0.0001, "epochs": 30}}
    #: The last layers that depend on the number of classes.
    class_heads: ClassVar[tuple[str, ...]] = ("fcos.cls_logits.", "sag_mask.predictor.")
    #: A Mask R-CNN's file gives the backbone and FPN; its RPN and RoI heads are left out, the heads start new.
    new_heads: ClassVar[tuple[str, ...]] = ("fcos.", "sag_mask.", "rpn.", "roi_heads.")
    loss_text: ClassVar[str] = ("FCOS focal loss of the classes + centerness-weighted GIoU loss of the boxes + "
                                "centerness BCE + SAG-Mask BCE of the positive proposals' masks")

    @classmethod
    def tiling_defaults(cls, config: CenterMaskConfig | None = None) -> dict[str, int]:
        """Tiles of the training crop, a quarter of it as overlap: a box reads the level it read in a crop.

        >>> CenterMaskMethod.tiling_defaults(CenterMaskConfig(patch_size=128))
        {'tile': 128, 'overlap': 32}
        """
        crop = (config or cls.Config()).patch_size
        return {"tile": crop, "overlap": crop // 4}

    def _new_model(self, n_classes: int) -> Any:
        """A randomly initialised CenterMask for ``n_classes`` classes on the configured backbone."""
        from cellbench.methods.adapters.detection.backbones import build_backbone
        from cellbench.methods.adapters.detection.centermask_net import CenterMaskNet

        backbone = build_backbone(self.config.backbone, trainable_layers=self.config.trained_layers)
        return CenterMaskNet(backbone, n_classes, self.config)

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """The instances of one image (a tile), scored by FCOS, overlaps and classes kept."""
        from cellbench.methods.adapters.detection.inference import box_mask_instances

        return box_mask_instances(self, image)

