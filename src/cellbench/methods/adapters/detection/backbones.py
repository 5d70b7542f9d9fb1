"""The detectors' backbones: a name a config may give -> how to build its feature extractor.

Every backbone gives feature maps at strides 4, 8, 16 and 32 that an FPN
(:mod:`.fpn`) turns into the pyramid P2-P6 the detection heads read. Two
sources:

* torchvision ResNets (``resnet18`` / ``resnet34`` / ``resnet50``), built by
  torchvision's own ``_resnet_fpn_extractor``: the layout of
  ``maskrcnn_resnet50_fpn_v2``, so its COCO checkpoint loads;
* timm models with ``features_only=True`` (``swin_t``, ``swin_s``,
  ``resnest50``, ``res2net50``, ``res2net101``, ``hrnet_w32``, ``vovnet39``):
  the backbones of the 18-methods benchmark's Swin-T, Swin-S, ResNeSt,
  Res2Net and HRNet rows (MMDetection / detectron2-ResNeSt Mask R-CNN
  configs) and of its Centermask2 row (VoVNetV2-39: one-shot aggregation
  with identity mapping and effective squeeze-excitation, timm's
  ``ese_vovnet39b``, the V-39-eSE of CenterMask's paper). Swin follows
  MMDetection's Swin Mask R-CNN: stochastic depth 0.2, windows of 7 at every
  stage whatever the input size (padded, shifted), a LayerNorm on each output.

A new backbone is one line of :data:`REGISTRY`. This module imports no torch
(configs validate :data:`BACKBONES` without it); :func:`build_backbone` does.

>>> BACKBONES[:3], REGISTRY["swin_t"].paper
(('resnet50', 'resnet34', 'resnet18'), 'Swin-T')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cellbench.errors import DataError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BACKBONES", "REGISTRY", "Backbone", "build_backbone"]


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone.

    Attributes:
        source: ``torchvision`` (a ResNet of ``torchvision.models.resnet``) or ``timm``.
        model: the model's name there (``resnet18``, ``swin_tiny_patch4_window7_224``).
        out_indices: timm feature indices of strides 4, 8, 16 and 32.
        options: more keyword arguments of ``timm.create_model``, as pairs.
        stages: parameter-name prefixes of the four stages, for ``trainable_layers`` (what comes before
            the first is the stem); None: timm's feature modules.
        out_norm: a LayerNorm on each output (MMDetection's Swin), channels last.
        min_batch: crops per training step the backbone needs (ResNeSt's split attention normalises
            pooled features over the batch, which one crop cannot do).
        paper: the row of the 18-methods benchmark this backbone stands for, if any.
    """

    source: Literal["torchvision", "timm"]
    model: str
    out_indices: tuple[int, ...] = (1, 2, 3, 4)
    options: tuple[tuple[str, Any], ...] = ()
    stages: tuple[str, ...] | None = None
    out_norm: bool = False
    min_batch: int = 1
    paper: str = ""


def _timm(model: str, out_indices: tuple[int, ...] = (1, 2, 3, 4), *, stages: tuple[str, ...] | None = None,
          out_norm: bool = False, min_batch: int = 1, paper: str = "", **options: Any) -> Backbone:
    return Backbone("timm", model, out_indices, tuple(sorted(options.items())), stages, out_norm, min_batch, paper)


#: Swin at any input size: no fixed image size, 7 x 7 windows (shifted every other block) at every stage,
#: padded to whole windows as MMDetection's Swin does; stochastic depth 0.2 as its Mask R-CNN configs.
_SWIN = {"strict_img_size": False, "always_partition": True, "drop_path_rate": 0.2}

#: Backbone name -> how to build it. Add a line here to add a backbone.
REGISTRY: dict[str, Backbone] = {
    "resnet50": Backbone("torchvision", "resnet50", paper="Mask RCNN"),
    "resnet34": Backbone("torchvision", "resnet34"),
    "resnet18": Backbone("torchvision", "resnet18"),
    "swin_t": _timm("swin_tiny_patch4_window7_224", (0, 1, 2, 3), out_norm=True, paper="Swin-T", **_SWIN),
    "swin_s": _timm("swin_small_patch4_window7_224", (0, 1, 2, 3), out_norm=True, paper="Swin-S", **_SWIN),
    "resnest50": _timm("resnest50d", min_batch=2, paper="ResNeSt"),
    "res2net50": _timm("res2net50_26w_4s", paper="Res2Net"),
    "res2net101": _timm("res2net101_26w_4s", paper="Res2Net"),
    "hrnet_w32": _timm("hrnet_w32", feature_location="", stages=("layer1", "stage2", "stage3", "stage4"),
                       paper="HRNet"),
    "vovnet39": _timm("ese_vovnet39b", paper="Centermask2"),
}

#: Backbones a config may name.
BACKBONES: tuple[str, ...] = tuple(REGISTRY)


def build_backbone(name: str, *, trainable_layers: int) -> nn.Module:
    """A randomly initialised ``name`` with an FPN of 256 channels (P2-P6, batch norm, P6 by max pool);
    the stem and the first ``5 - trainable_layers`` stages frozen.

    The module has ``body`` (features at strides 4-32), ``fpn`` and ``out_channels``, as torchvision's
    ``BackboneWithFPN``; a DataError names an unknown backbone or a missing timm.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        raise DataError(f"unknown detector backbone {name!r}; known: {list(BACKBONES)}")
    if not 0 <= trainable_layers <= 5:
        raise DataError(f"trainable_layers must be 0-5, got {trainable_layers}")
    if spec.source == "torchvision":
        from torch import nn
        from torchvision.models import resnet
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

        trunk = getattr(resnet, spec.model)(weights=None)
        return _resnet_fpn_extractor(trunk, trainable_layers, norm_layer=nn.BatchNorm2d)
    try:
        import timm
    except ImportError as exc:
        raise DataError(f"backbone {name!r} needs timm (pip install 'cellbench[maskrcnn]')") from exc
    from cellbench.methods.adapters.detection.fpn import FeaturePyramid, TimmFeatures, freeze_stages

    trunk = timm.create_model(spec.model, pretrained=False, features_only=True, out_indices=spec.out_indices,
                              **dict(spec.options))
    body = TimmFeatures(trunk, out_norm=spec.out_norm)
    stages = spec.stages or tuple(trunk.feature_info.module_name())
    freeze_stages(body.trunk, stages, trainable_layers)
    return FeaturePyramid(body, body.channels)
