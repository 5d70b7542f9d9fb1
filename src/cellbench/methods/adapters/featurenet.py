"""``featurenet``: DeepCell's FeatureNet (Van Valen et al. 2016), the 18-methods paper's "FeatureNet", in PyTorch.

What the 18-methods paper ran (deepcell-tf 0.12.9, ``deepcell/model_zoo/featurenet.py``
``bn_feature_net_2D``, trained as its "Interior-Edge Segmentation 2D Fully
Convolutional" notebook; the paper: lr 0.001, batch 16, 25 epochs):

* **Network**: a pixel classifier with a receptive field of 61 px, run fully
  convolutionally (``dilated=True``): the image is normalised in the network
  (``norm_method="std"``: minus its mean and over its standard deviation in
  a 61 px window) and reflect-padded by 30 px; then pairs of unpadded 3x3
  (the first 4x4) convolutions, each with batch norm and ReLU, each pair
  followed by a 2x2 max pooling of stride 1 whose dilation doubles the
  convolutions' dilation after it (1, 2, 4, 8), so the output keeps the
  input's resolution; a last convolution with the remaining receptive field
  (4x4, dilation 8) and two 1x1 "dense" layers (``TensorProduct``) with batch
  norm and ReLU give 3 class logits per pixel (softmax).
* **Targets and loss**: DeepCell's ``pixelwise`` transform (edge dilated by
  1 px, :func:`~cellbench.methods.adapters.semantic.deepcell.pixelwise_map`)
  and its class-weighted cross-entropy; SGD with Nesterov momentum 0.9, the
  rate x0.99 every epoch, L2 1e-5 on the kernels (``weight_decay`` 2e-5);
  flips, rotations and zoom 0.8-1.2.
* **Instances**: the notebook keeps pixels whose foreground probability
  exceeds 0.9 and labels the connected pieces of interior probability > 0.2,
  dropping pieces under 50 px; here those pieces seed a watershed on the
  negative interior probability over the foreground (so cells get their
  edge pixels back and touching seeds split along the predicted edges,
  :func:`~cellbench.methods.adapters.semantic.postprocess.interior_watershed`).
  Scores: each instance's mean interior probability.

Why a method of its own and not ``unet``'s 3-class mode: the classes and
the watershed are alike, the network is not. ``unet`` is an encoder-decoder
(MONAI U-Net, strided down to 1/16 and back, skip connections, Dice + CE);
FeatureNet never leaves full resolution, has a fixed 61 px receptive field
(dilated convolutions and poolings), no decoder and no skips, and classifies
each pixel from its window with fully connected layers, trained with a
class-weighted cross-entropy. The 18-methods paper ranks the two apart.

Where cellbench had to choose: the input is the semantic family's (three
channels, each normalised between its 1st and 99th percentile, before the
network's own normalisation); one network, not the notebook's two (a
foreground model whose output feeds a second, pixelwise one): the pixelwise
model's background class gives the foreground; training on random patches
of ``train.patch_size`` (the notebook trains on whole images, batch 1);
DeepCell's sample-based mode (61 px windows around sampled pixels) is the
same network unrolled and is not offered.

torch and MONAI (sliding windows) are imported inside the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from cellbench.methods.adapters.semantic.deepcell import (DeepCellAugment, DeepCellTrain, pixelwise_map,
                                                          weighted_cross_entropy)
from cellbench.methods.adapters.semantic.method import SemanticConfig, SemanticMethod
from cellbench.methods.adapters.semantic.postprocess import three_class_instances

__all__ = ["FeatureNetAugment", "FeatureNetConfig", "FeatureNetMethod", "FeatureNetTrain", "build_featurenet",
           "featurenet_layers"]


@dataclass(frozen=True)
class FeatureNetTrain(DeepCellTrain):
    """The paper's FeatureNet schedule (lr 0.001, batch 16, 25 epochs) with DeepCell's optimiser: SGD, Nesterov
    momentum 0.9, L2 1e-5 on the kernels (weight decay 2e-5), the rate x0.99 after every epoch."""

    optimizer: Literal["adamw", "sgd"] = "sgd"
    lr: float = 1e-3
    weight_decay: float = 2e-5
    batch_size: int = 16
    epochs: int = 25


@dataclass(frozen=True)
class FeatureNetAugment(DeepCellAugment):
    """DeepCell's ``ImageFullyConvDataGenerator`` in the notebook: zoom 0.8-1.2 on every patch, flips, rotations."""

    zoom_min: float = 0.8
    zoom_max: float = 1.2


@dataclass(frozen=True)
class FeatureNetConfig(SemanticConfig):
    """FeatureNet settings, with the sections of :class:`SemanticConfig`.

    Attributes:
        receptive_field: side of the window each pixel is classified from (61).
        conv_filters: width of the convolutions (``n_conv_filters``; 64 in ``bn_feature_net_2D``, 32 in the
            notebook).
        dense_filters: width of the last convolution and the first dense layer (200; the notebook 128).
        local_norm: normalise in the network by the mean and standard deviation of a ``receptive_field`` window
            (``norm_method="std"``); False: no normalisation layer.
        pixelwise_dilation: px the edge class is dilated by (1).
        interior_threshold: seeds are pieces of interior probability above this (0.2).
        foreground_threshold: a pixel is foreground when 1 - P(background) exceeds it (0.9).
        min_seed, min_size: seeds and cells under these areas (px) are dropped (1; 50).
    """

    receptive_field: int = 61
    conv_filters: int = 64
    dense_filters: int = 200
    local_norm: bool = True
    pixelwise_dilation: int = 1
    interior_threshold: float = 0.2
    foreground_threshold: float = 0.9
    min_seed: int = 1
    min_size: int = 50
    train: FeatureNetTrain = field(default_factory=FeatureNetTrain)
    augment: FeatureNetAugment = field(default_factory=FeatureNetAugment)

    def __post_init__(self) -> None:
        super().__post_init__()
        featurenet_layers(self.receptive_field)  # raises for one too small
        if self.conv_filters < 1 or self.dense_filters < 1:
            raise ValueError(f"conv_filters and dense_filters must be positive, got {self.conv_filters}, "
                             f"{self.dense_filters}")


def featurenet_layers(receptive_field: int) -> list[tuple[str, int, int]]:
    """``bn_feature_net_2D``'s layers for a receptive field: (``conv`` or ``pool``, kernel, dilation) in order,
    the last one the final convolution; their receptive field adds up to ``receptive_field``.

    >>> layers = featurenet_layers(61)
    >>> [k for kind, k, d in layers if kind == "conv"], [d for kind, k, d in layers if kind == "pool"]
    ([4, 3, 3, 3, 3, 3, 4], [1, 2, 4])
    >>> 1 + sum((k - 1) * d for kind, k, d in layers)
    61
    """
    if receptive_field < 5:
        raise ValueError(f"receptive_field must be at least 5, got {receptive_field}")
    layers, rf, blocks, d = [], receptive_field, 0, 1
    while rf > 4:
        k = 3 if rf % 2 == 0 else 4
        layers.append(("conv", k, d))
        blocks += 1
        rf -= k - 1
        if blocks % 2 == 0:
            layers.append(("pool", 2, d))
            d *= 2
            rf //= 2
    layers.append(("conv", rf, d))
    return layers


def build_featurenet(*, in_channels: int = 3, n_classes: int = 3, receptive_field: int = 61, conv_filters: int = 64,
                     dense_filters: int = 200, local_norm: bool = True) -> Any:
    """``bn_feature_net_2D(dilated=True)`` as a torch module: B x C x H x W in, B x n_classes x H x W logits out."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    layers = featurenet_layers(receptive_field)
    win = (receptive_field - 1) // 2

    class FeatureNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            body: list[nn.Module] = []
            width = in_channels
            for i, (kind, k, d) in enumerate(layers):
                if kind == "pool":
                    body.append(nn.MaxPool2d(k, stride=1, dilation=d))
                    continue
                out = dense_filters if i == len(layers) - 1 else conv_filters
                body += [nn.Conv2d(width, out, k, dilation=d), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                width = out
            self.body = nn.Sequential(*body)
            self.dense = nn.Sequential(nn.Conv2d(dense_filters, dense_filters, 1), nn.BatchNorm2d(dense_filters),
                                       nn.ReLU(inplace=True), nn.Conv2d(dense_filters, n_classes, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if local_norm:  # DeepCell's ImageNormalization2D "std": zero-padded box filters of the window
                mean = F.avg_pool2d(x, receptive_field, stride=1, padding=win, count_include_pad=True)
                x = x - mean
                m1 = F.avg_pool2d(x, receptive_field, stride=1, padding=win, count_include_pad=True)
                m2 = F.avg_pool2d(x * x, receptive_field, stride=1, padding=win, count_include_pad=True)
                x = x / (torch.sqrt(torch.clamp(m2 - m1 * m1, min=0.0)) + 1e-7)
            x = F.pad(x, (win, win, win, win), mode="reflect")
            return self.dense(self.body(x))

    return FeatureNet()


class FeatureNetMethod(SemanticMethod):
    """DeepCell's FeatureNet: a dilated 61 px pixel classifier (edge / interior / background), watershed."""

    name = "featurenet"
    version = "1"
    description = ("FeatureNet (DeepCell; the 18-methods paper's FeatureNet): dilated-convolution pixel classifier, "
                   "61 px receptive field, interior/edge/background, watershed")
    requires = ("torch", "monai")
    extra = "unet"  # torch and MONAI, as unet
    Config = FeatureNetConfig
    #: ``cpu``: the notebook's widths (32 / 128) and lr 0.01, 128 px patches in batches of 4, 300 steps (~2.6 s of
    #: CPU a step on one thread, ~13 min; the published widths cost ~3x).
    presets = {"cpu": {"conv_filters": 32, "dense_filters": 128,
                       "train": {"patch_size": 128, "batch_size": 4, "lr": 0.01, "epochs": 150, "steps_per_epoch": 2}}}

    def build_network(self, *, pretrained: bool = False) -> Any:
        cfg = self.config
        return build_featurenet(receptive_field=cfg.receptive_field, conv_filters=cfg.conv_filters,
                                dense_filters=cfg.dense_filters, local_norm=cfg.local_norm)

    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, None]:
        return pixelwise_map(labels, dilation_radius=self.config.pixelwise_dilation), None

    def loss(self, output: Any, batch: dict[str, Any]) -> Any:
        return weighted_cross_entropy(output, batch["classes"])

    def loss_name(self) -> str:
        return "class-weighted cross-entropy (DeepCell's weighted_categorical_crossentropy)"

    def instances(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        return three_class_instances(maps, interior_threshold=cfg.interior_threshold,
                                     foreground_threshold=cfg.foreground_threshold, min_seed=cfg.min_seed,
                                     min_size=cfg.min_size)
