"""A timm feature extractor as a detector backbone: NCHW maps at strides 4-32 for any input size, and its FPN.

:class:`TimmFeatures` wraps a ``timm.create_model(..., features_only=True)``
model: it pads the input to a multiple of 32 (HRNet fuses its branches by
exact factors of 2; torchvision's detection transform pads its batches so
already), turns channels-last maps (Swin) into NCHW, applies MMDetection's
per-output LayerNorm when asked, and crops each map to ``ceil(size / stride)``,
the size a torchvision ResNet gives. :class:`FeaturePyramid` puts
torchvision's FPN on top, as ``maskrcnn_resnet50_fpn_v2`` does on its ResNet
(256 channels, batch norm, P6 by max pool), with the same attribute names
(``body``, ``fpn``, ``out_channels``) so the heads and the weight files see one
layout for every backbone. :func:`freeze_stages` gives ``trainable_layers``
torchvision's meaning on any trunk.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeaturePyramid", "TimmFeatures", "freeze_stages", "stage_of"]

#: Inputs are padded to a multiple of this (the coarsest stride).
MULTIPLE = 32


class TimmFeatures(nn.Module):
    """The four feature maps of a timm ``features_only`` model as ``{"0": stride 4, ..., "3": stride 32}``, NCHW.

    ``trunk`` holds the timm model (its parameter names are timm's, flattened
    the way timm's feature wrappers flatten them); ``norms``, when
    ``out_norm``, one LayerNorm per output (new layers: no ImageNet file has them).
    """

    def __init__(self, trunk: nn.Module, *, out_norm: bool = False) -> None:
        super().__init__()
        info = trunk.feature_info
        if list(info.reduction()) != [4, 8, 16, 32]:
            raise ValueError(f"a detector backbone needs features at strides 4, 8, 16, 32; this timm model gives "
                             f"{list(info.reduction())} (choose out_indices)")
        self.trunk = trunk
        self.channels: tuple[int, ...] = tuple(int(c) for c in info.channels())
        self.strides: tuple[int, ...] = tuple(int(r) for r in info.reduction())
        self.channels_last = str(getattr(trunk, "output_fmt", "NCHW")).endswith("NHWC")
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.channels) if out_norm else None

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % MULTIPLE, (-w) % MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for k, feature in enumerate(self.trunk(x)):
            if self.channels_last:
                feature = feature.permute(0, 3, 1, 2)
            if self.norms is not None:  # over channels
                feature = self.norms[k](feature.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            stride = self.strides[k]
            out[str(k)] = feature[..., : math.ceil(h / stride), : math.ceil(w / stride)].contiguous()
        return out


class FeaturePyramid(nn.Module):
    """``body`` (feature maps at strides 4-32) under torchvision's FPN: P2-P6 of 256 channels, as
    torchvision's ``BackboneWithFPN``."""

    def __init__(self, body: nn.Module, in_channels: Sequence[int], out_channels: int = 256) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=LastLevelMaxPool(),
                                         norm_layer=nn.BatchNorm2d)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def stage_of(names: Sequence[str], stages: Sequence[str]) -> list[int]:
    """The stage of each parameter name, in order: 0 for the stem (before the first stage), k for the k-th
    of ``stages`` (name prefixes, ``.`` and ``_`` alike, as timm's feature wrappers flatten names); what lies
    between two stages (HRNet's transitions, a downsampling) leads to the next one.

    >>> stage_of(["conv1.w", "layer1.0.w", "transition1.w", "stage2.0.w"], ["layer1", "stage2"])
    [0, 1, 2, 2]
    """
    marks = [s.replace(".", "_") + "_" for s in stages]
    out, current = [], 0
    for name in names:
        flat = name.replace(".", "_")
        hit = next((k + 1 for k, mark in enumerate(marks) if flat.startswith(mark)), None)
        if hit is not None:
            current = hit
            out.append(hit)
        else:
            out.append(current + 1 if current else 0)
    return out


def freeze_stages(trunk: nn.Module, stages: Sequence[str], trainable_layers: int) -> None:
    """Freeze the stem and the first ``5 - trainable_layers`` of the four ``stages``, as torchvision's
    ``trainable_layers`` does on a ResNet (3: the stem and the first stage frozen; 5: nothing)."""
    names, params = zip(*trunk.named_parameters(), strict=True)
    groups = stage_of(names, stages)
    found = set(groups)
    missing = [s for k, s in enumerate(stages, start=1) if k not in found]
    if missing:
        raise ValueError(f"backbone stages {missing} match no parameter of {type(trunk).__name__}")
    for group, param in zip(groups, params, strict=True):
        if group < 5 - trainable_layers:
            param.requires_grad_(False)
