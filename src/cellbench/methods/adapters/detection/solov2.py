"""``solov2``: SOLOv2 (Wang et al., NeurIPS 2020), the 18-methods benchmark's "SOLOv2".

A single-stage, box-free instance segmenter: every cell of a grid over the
image predicts a category score and a dynamic mask kernel, one mask feature
map serves every kernel, and Matrix NMS decays the scores of duplicates
(:mod:`~cellbench.methods.adapters.detection.solov2_head`,
:mod:`~cellbench.methods.adapters.detection.matrix_nms`). Settings are
MMDetection's ``solov2_r50_fpn`` config, the one the benchmark ran (grids 40,
36, 24, 16, 12; scale ranges; focal loss for the categories, Dice loss x 3 for
the masks; gradients clipped at norm 35; Matrix NMS with a gaussian kernel,
sigma 2, over the 500 best masks; score threshold 0.1, 0.05 after the decay;
mask threshold 0.5).

From the family (:mod:`cellbench.methods.adapters.detection`): the backbones
with their FPN (``resnet50`` as published, ``resnet18`` / ``resnet34`` for CPUs,
and the timm ones), pretrained files (:mod:`.weights`: an ImageNet
classifier's file loads into the backbone; a whole Mask R-CNN's gives its
backbone and FPN), the random crops (:mod:`.targets`), the training loop
(:func:`~cellbench.methods.adapters.detection.training.train_detector`), validation
and the model directory (``solov2.pt``, ``solov2.json``) of
:class:`~cellbench.methods.adapters.detection.maskrcnn.MaskRCNNMethod`. Whole
images are predicted in tiles of the training crop (:meth:`SOLOv2Method.tiling_defaults`):
the grid and the coordinate channels are laid out in units of a training
crop, so the network sees on a tile what it saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from cellbench.instances import Instance, InstanceSet
from cellbench.methods.adapters.detection.backbones import BACKBONES
from cellbench.methods.adapters.detection.config import DetectorConfig
from cellbench.methods.adapters.detection.maskrcnn import MaskRCNNMethod
from cellbench.methods.device import on_config_threads

__all__ = ["SOLOv2Config", "SOLOv2Method"]


@dataclass(frozen=True)
class SOLOv2Config(DetectorConfig):
    """SOLOv2 settings: the family's (:class:`~cellbench.methods.adapters.detection.config.DetectorConfig`:
    backbone, pretrained, the training loop, preprocess, threads; ``patch_size`` x ``scale`` is the side the
    grids divide), and (MMDetection's names in brackets where they differ)

    Attributes:
        num_grids: grid cells per side of a training crop, for each of the five levels (strides 8, 8, 16,
            32, 32); the cells keep their size in pixels on inputs of other sizes.
        scale_ranges: the square root of box area (network pixels) each level learns.
        pos_scale: the part of an instance's half box around its centre whose cells are positives (sigma).
        head_width: channels of the category and kernel branches' convolutions (feat_channels).
        stacked_convs: convolutions in each of the two branches.
        mask_width: channels of the mask feature branch's convolutions (mask_feature_head.feat_channels).
        kernel_channels: channels of the mask feature, so weights of each dynamic kernel (out_channels).
        mask_loss_weight: weight of the Dice loss (loss_mask.loss_weight).
        focal_alpha, focal_gamma: the category branch's focal loss.
        max_grad_norm: gradients are clipped to this norm (grad_clip.max_norm); None: not clipped.
        score_threshold: category score a cell needs (score_thr).
        mask_threshold: mask probability a pixel needs (mask_thr).
        update_threshold: score a mask needs after Matrix NMS's decay (filter_thr).
        nms_kernel, nms_sigma: Matrix NMS's decay (kernel, sigma).
        nms_pre: the best masks Matrix NMS ranks (nms_pre).
        detections_per_image: at most this many instances per tile (max_per_img).
    """

    num_grids: tuple[int, ...] = (40, 36, 24, 16, 12)
    scale_ranges: tuple[tuple[float, float], ...] = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
    pos_scale: float = 0.2
    head_width: int = 512
    stacked_convs: int = 4
    mask_width: int = 128
    kernel_channels: int = 256
    mask_loss_weight: float = 3.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    max_grad_norm: float | None = 35.0
    score_threshold: float = 0.1
    mask_threshold: float = 0.5
    update_threshold: float = 0.05
    nms_kernel: Literal["gaussian", "linear"] = "gaussian"
    nms_sigma: float = 2.0
    nms_pre: int = 500
    detections_per_image: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        # a config file gives lists of lists; the config is frozen and compares equal to its defaults' form
        object.__setattr__(self, "scale_ranges", tuple(tuple(r) for r in self.scale_ranges))
        if self.nms_kernel not in ("gaussian", "linear"):
            raise ValueError(f"nms_kernel must be 'gaussian' or 'linear', got {self.nms_kernel!r}")
        if len(self.num_grids) != 5 or len(self.scale_ranges) != 5 or min(self.num_grids) < 1:
            raise ValueError(f"num_grids and scale_ranges need 5 entries (one per level), grids >= 1; got "
                             f"{list(self.num_grids)}, {[list(r) for r in self.scale_ranges]}")
        if any(len(r) != 2 or not 0 <= r[0] <= r[1] for r in self.scale_ranges):
            raise ValueError(f"each scale range is [low, high] with 0 <= low <= high, got "
                             f"{[list(r) for r in self.scale_ranges]}")
        if min(self.head_width, self.stacked_convs, self.mask_width, self.kernel_channels, self.nms_pre,
               self.detections_per_image) < 1:
            raise ValueError("head_width, stacked_convs, mask_width, kernel_channels, nms_pre and "
                             "detections_per_image must be >= 1")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}")


class SOLOv2Method(MaskRCNNMethod):
    """SOLOv2: grid cells predict categories and dynamic mask kernels; Matrix NMS; one model for all classes.

    Training, validation and the model directory are :class:`MaskRCNNMethod`'s (the network takes images and
    targets and returns its losses, as a torchvision detector does); the network and prediction are its own.
    """

    name = "solov2"
    version = "1"
    paper: ClassVar[str] = "SOLOv2"
    description = (f"SOLOv2 (the 18-methods paper's row): location-category grid, dynamic mask kernels on a unified "
                   f"mask feature, Matrix NMS; MMDetection's solov2_r50_fpn settings; maskrcnn's backbones "
                   f"({', '.join(BACKBONES)}; resnet50 published)")
    Config = SOLOv2Config  # type: ignore[assignment]
    #: ``cpu``: ResNet-18-FPN on 256 px crops with 128-channel branches, AdamW.
    presets = {"cpu": {"backbone": "resnet18", "patch_size": 256, "batch_size": 2, "head_width": 128,
                       "optimizer": "adamw", "lr": 0.0005, "weight_decay": 0.0001, "epochs": 30}}
    #: The category branch's last layer depends on the number of classes.
    class_heads: ClassVar[tuple[str, ...]] = ("head.conv_cls.",)
    #: A Mask R-CNN's file gives the backbone and FPN; its RPN and RoI heads are left out, the head starts new.
    new_heads: ClassVar[tuple[str, ...]] = ("head.", "rpn.", "roi_heads.")
    loss_text: ClassVar[str] = "focal loss of the grid's categories + Dice loss of the positive cells' masks x 3"

    @classmethod
    def tiling_defaults(cls, config: SOLOv2Config | None = None) -> dict[str, int]:
        """Tiles of the training crop, a quarter of it as overlap: a tile has the grid a crop had.

        >>> SOLOv2Method.tiling_defaults(SOLOv2Config(patch_size=128))
        {'tile': 128, 'overlap': 32}
        """
        crop = (config or cls.Config()).patch_size
        return {"tile": crop, "overlap": crop // 4}

    def _new_model(self, n_classes: int) -> Any:
        """A randomly initialised SOLOv2 for ``n_classes`` classes on the configured backbone."""
        from cellbench.methods.adapters.detection.backbones import build_backbone
        from cellbench.methods.adapters.detection.solov2_head import SOLOv2, SOLOv2Head

        cfg = self.config
        backbone = build_backbone(cfg.backbone, trainable_layers=cfg.trained_layers)
        head = SOLOv2Head(backbone.out_channels, n_classes, max(1, round(cfg.patch_size * cfg.scale)), cfg)
        return SOLOv2(backbone, head)

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """The instances of one image (a tile), scored (category score x maskness, decayed by Matrix NMS),
        overlaps and classes kept."""
        import torch

        from cellbench.methods.adapters.detection.inference import network_output
        from cellbench.methods.adapters.detection.solov2_head import MASK_STRIDE, predict_masks

        cfg = self.config
        (kernels, logits, mask_feats), (h, w), (rh, rw) = network_output(self, image)
        with torch.no_grad():
            probs, labels, scores = predict_masks(
                kernels, logits, mask_feats, score_threshold=cfg.score_threshold, mask_threshold=cfg.mask_threshold,
                update_threshold=cfg.update_threshold, nms_pre=cfg.nms_pre, max_instances=cfg.detections_per_image,
                kernel=cfg.nms_kernel, sigma=cfg.nms_sigma)
        padded = tuple(MASK_STRIDE * n for n in mask_feats.shape[-2:])
        instances = []
        for start in range(0, len(probs), 16):  # full-size masks a few at a time
            chunk = torch.nn.functional.interpolate(probs[None, start:start + 16], size=padded, mode="bilinear",
                                                    align_corners=False)[..., :rh, :rw]
            chunk = torch.nn.functional.interpolate(chunk, size=(h, w), mode="bilinear", align_corners=False)[0]
            for k, mask in enumerate((chunk > cfg.mask_threshold).cpu().numpy(), start=start):
                if mask.any():
                    instances.append(Instance.from_mask(mask, score=float(scores[k]), class_id=int(labels[k])))
        return InstanceSet(shape=(h, w), instances=tuple(instances), classes=self._classes)
