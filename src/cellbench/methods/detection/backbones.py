"""The detectors' backbones: a name a config may give -> how to build its feature extractor.

Every backbone gives feature maps at strides 4, 8, 16 and 32 that an FPN
turns into the pyramid P2-P6 the detection heads read. The torchvision
ResNets (``resnet18`` / ``resnet34`` / ``resnet50``) are built by
torchvision's own ``_resnet_fpn_extractor``: the layout of
``maskrcnn_resnet50_fpn_v2``, so its COCO checkpoint loads.

A new backbone is one line of :data:`REGISTRY`. This module imports no torch
(configs validate :data:`BACKBONES` without it); :func:`build_backbone` does.

>>> BACKBONES
('resnet50', 'resnet34', 'resnet18')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cellbench.errors import DataError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BACKBONES", "REGISTRY", "Backbone", "build_backbone"]


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone.

    Attributes:
        source: ``torchvision`` (a ResNet of ``torchvision.models.resnet``).
        model: the model's name there (``resnet18``).
        min_batch: crops per training step the backbone needs.
        paper: the row of the 18-methods benchmark this backbone stands for, if any.
    """

    source: Literal["torchvision"]
    model: str
    min_batch: int = 1
    paper: str = ""


#: Backbone name -> how to build it. Add a line here to add a backbone.
REGISTRY: dict[str, Backbone] = {
    "resnet50": Backbone("torchvision", "resnet50", paper="Mask RCNN"),
    "resnet34": Backbone("torchvision", "resnet34"),
    "resnet18": Backbone("torchvision", "resnet18"),
}

#: Backbones a config may name.
BACKBONES: tuple[str, ...] = tuple(REGISTRY)


def build_backbone(name: str, *, trainable_layers: int) -> nn.Module:
    """A randomly initialised ``name`` with an FPN of 256 channels (P2-P6, batch norm, P6 by max pool);
    the stem and the first ``5 - trainable_layers`` stages frozen.

    The module has ``body`` (features at strides 4-32), ``fpn`` and ``out_channels``, as torchvision's
    ``BackboneWithFPN``; a DataError names an unknown backbone.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        raise DataError(f"unknown detector backbone {name!r}; known: {list(BACKBONES)}")
    if not 0 <= trainable_layers <= 5:
        raise DataError(f"trainable_layers must be 0-5, got {trainable_layers}")
    from torch import nn
    from torchvision.models import resnet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    trunk = getattr(resnet, spec.model)(weights=None)
    return _resnet_fpn_extractor(trunk, trainable_layers, norm_layer=nn.BatchNorm2d)
