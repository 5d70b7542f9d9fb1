"""``mesmer``: Mesmer (Greenwald et al. 2022), DeepCell's PanopticNet, in PyTorch.

What the 18-methods paper ran (deepcell-tf 0.12.9, ``deepcell/model_zoo/panopticnet.py``,
``deepcell/model_zoo/fpn.py``, ``deepcell/applications/mesmer.py``, deepcell-toolbox's
``deep_watershed``; the training recipe of the Mesmer publication notebook, as re-run for TissueNet):

* **Input**: two channels, nuclear and membrane (or cytoplasm), each clipped
  at its 99.9th percentile of the non-zero pixels, rescaled to [0, 1] and
  equalised by CLAHE with 128 px tiles (``mesmer_preprocess``); two
  location channels (row and column, 0 to 1 across the window,
  ``Location2D``) are appended and a 1x1 convolution maps the four to the
  three channels the backbone takes.
* **Network**: a ResNet-50 whose C3-C5 features feed a feature pyramid
  (1x1 lateral convolutions of 256 channels, each level plus the 2x bilinear
  upsampling of the level above, a 3x3 convolution); every semantic head
  reads P3 (stride 8): three rounds of a 3x3 convolution (64 channels) and a
  2x bilinear upsampling back to full resolution, a 1x1 convolution (128),
  batch norm, ReLU and a 1x1 convolution to the head's outputs, ReLU on the
  regression head (applied by the loss and at prediction, so that training
  keeps a gradient where the head's output is negative and the target is not:
  :func:`relu_regression_loss`) and softmax on the class head.
* **Heads** (Mesmer's ``num_semantic_classes=[1, 3, 1, 3]``): per compartment,
  whole cell and nucleus, the inner distance (1 channel) and the
  ``pixelwise`` classes (edge / interior / background).
* **Targets and loss**: inner distance after eroding every cell by 1 px,
  ``alpha="auto"``; pixelwise edges dilated by 1 px (both in
  :mod:`~cellbench.methods.adapters.semantic.deepcell`); mean squared error
  on the inner distance plus 0.01 x the class-weighted cross-entropy.
  Adam (the paper: lr 4e-4, batch 8, 200 epochs), the rate x0.99 each epoch;
  random 256 px crops zoomed by 0.7-1/0.7 with flips and rotations.
* **Instances**: ``deep_watershed``: h-maxima of the inner distance (height
  ``maxima_threshold``, a disk of radius 2) seed a watershed of the smoothed
  (sigma 2) interior probability inside ``interior > 0.2``; objects under
  15 px dropped and holes under 15 px filled (Mesmer's settings; the
  maxima threshold 0.1 for nuclei, 0.075 for whole cells).

Where cellbench had to choose:

1. One compartment per model (``compartment``): the published network
   carries both compartments' heads, trained together on TissueNet's paired
   nuclear and whole-cell annotations; a cellbench task holds one
   annotation (TissueNet's ``nuclei`` and ``whole-cell`` are two tasks), so
   the network here has the two heads of the compartment it is trained on.
   Each head and the shared network are Mesmer's.
2. Channels (``channels``): which image channel is the nuclear and which the
   membrane input, ``"grey"`` (the mean of the first three) or None (blank).
   A one-channel image runs as the nuclear input with a blank membrane
   channel (the default ``(0, 1)`` reads channel 1 of a one-channel image as
   blank); DSB's PNGs, grey or RGB, as ``channels: [grey, null]`` with
   ``compartment: nuclear``. Trained from scratch, the network learns
   whatever its input slots hold (a whole-cell-only image in the nuclear slot
   too); the slots matter for published Mesmer weights, which are not used.
3. The pyramid levels P4-P7 and their 3x3 convolutions, which no head reads
   (DeepCell's heads take the finest level only), are not built.
4. No ImageNet weights are fetched: the ResNet starts at random unless
   ``backbone_weights`` names a torchvision ResNet state dict file.
5. Targets are computed once per training image and cropped / zoomed with
   it (DeepCell computes them on each augmented crop); rotations are
   multiples of 90 degrees (DeepCell: any angle); no gradient-norm clipping
   (DeepCell clips each gradient to norm 0.001 before Adam).
6. Prediction slides windows of the training crop over the whole image
   (MONAI, 25 % overlap); the application's rescaling to 0.5 um per pixel is
   not done (the model is trained at the data's own scale).
7. Scores (Mesmer has none): each instance's mean interior probability.

deepcell-tf and deepcell-toolbox are not used: their licence grants
non-commercial academic use only. torch, torchvision and MONAI are imported
inside the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from skimage.exposure import equalize_adapthist

from cellbench.errors import DataError
from cellbench.methods.adapters.semantic.deepcell import (DeepCellAugment, DeepCellTrain, deep_watershed,
                                                          inner_distance, pixelwise_map, weighted_cross_entropy)
from cellbench.methods.adapters.semantic.method import SemanticConfig, SemanticMethod
from cellbench.methods.adapters.semantic.postprocess import softmax
from cellbench.methods.adapters.semantic.targets import INTERIOR

__all__ = ["MesmerAugment", "MesmerConfig", "MesmerMethod", "MesmerPreprocess", "MesmerTrain", "build_panopticnet",
           "mesmer_input"]

#: torchvision ResNets a config may name, with their C3, C4, C5 widths.
BACKBONES: dict[str, tuple[int, int, int]] = {"resnet50": (512, 1024, 2048), "resnet34": (128, 256, 512),
                                              "resnet18": (128, 256, 512)}
#: Mesmer's maxima thresholds (``Mesmer.predict`` defaults).
MAXIMA_THRESHOLD = {"nuclear": 0.1, "whole-cell": 0.075}

Channel = int | Literal["grey"] | None


@dataclass(frozen=True)
class MesmerTrain(DeepCellTrain):
    """The paper's Mesmer schedule: Adam (no weight decay) at lr 4e-4, batch 8, 200 epochs of 256 px crops,
    the rate x0.99 after every epoch (DeepCell's ``rate_scheduler``)."""

    lr: float = 4e-4
    weight_decay: float = 0.0
    epochs: int = 200


@dataclass(frozen=True)
class MesmerAugment(DeepCellAugment):
    """DeepCell's ``CroppingDataGenerator`` for Mesmer: zoom 0.7-1/0.7 on every crop, flips, rotations."""

    zoom_min: float = 0.7
    zoom_max: float = 1 / 0.7


@dataclass(frozen=True)
class MesmerPreprocess:
    """``mesmer_preprocess``: clip each channel at a percentile of its non-zero pixels, rescale to [0, 1], CLAHE.

    Attributes:
        percentile: the clipping percentile (99.9).
        clahe_kernel: CLAHE tile side in px (128); 0 skips CLAHE.
    """

    percentile: float = 99.9
    clahe_kernel: int = 128

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100 or self.clahe_kernel < 0:
            raise ValueError(f"need 0 < percentile <= 100 and clahe_kernel >= 0, got {self.percentile}, "
                             f"{self.clahe_kernel}")


@dataclass(frozen=True)
class MesmerConfig(SemanticConfig):
    """Mesmer settings, with the sections of :class:`SemanticConfig` (the paper's and DeepCell's defaults).

    Attributes:
        backbone: torchvision ResNet (``resnet50`` as published; ``resnet34`` / ``resnet18`` for a CPU).
        backbone_weights: a torchvision ResNet state dict file (ImageNet) for the backbone; None: random.
        compartment: ``nuclear`` or ``whole-cell``: what the model is trained on and predicts.
        channels: the image channels fed as (nuclear, membrane): an index, ``grey`` (the mean of the first
            three channels) or None (a blank channel).
        location: append the two location channels (Mesmer: always).
        feature_size, head_filters, head_dense: pyramid width (256), head upsampling width (64), head
            1x1 width (128).
        pixelwise_dilation: px the pixelwise edges are dilated by (1).
        inner_erosion: px every cell is eroded by before the inner distance (1).
        inner_beta: the inner distance's ``beta`` (1).
        class_loss_weight: weight of the pixelwise cross-entropy next to the distance MSE (0.01).
        radius, maxima_threshold, interior_threshold, maxima_smooth, interior_smooth, small_objects,
            fill_holes: ``deep_watershed`` settings; ``maxima_threshold`` None: Mesmer's for the compartment
            (nuclear 0.1, whole-cell 0.075).
    """

    backbone: str = "resnet50"
    backbone_weights: str | None = None
    compartment: Literal["nuclear", "whole-cell"] = "whole-cell"
    channels: tuple[Channel, Channel] = (0, 1)
    location: bool = True
    feature_size: int = 256
    head_filters: int = 64
    head_dense: int = 128
    pixelwise_dilation: int = 1
    inner_erosion: int = 1
    inner_beta: float = 1.0
    class_loss_weight: float = 0.01
    radius: int = 2
    maxima_threshold: float | None = None
    interior_threshold: float = 0.2
    maxima_smooth: float = 0.0
    interior_smooth: float = 2.0
    small_objects: int = 15
    fill_holes: int = 15
    train: MesmerTrain = field(default_factory=MesmerTrain)
    augment: MesmerAugment = field(default_factory=MesmerAugment)
    preprocess: MesmerPreprocess = field(default_factory=MesmerPreprocess)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        if self.compartment not in MAXIMA_THRESHOLD:
            raise ValueError(f"compartment must be 'nuclear' or 'whole-cell', got {self.compartment!r}")
        if len(self.channels) != 2 or not all(c is None or c == "grey" or (isinstance(c, int) and c >= 0)
                                              for c in self.channels):
            raise ValueError(f"channels must be two entries, each a channel index, 'grey' or null, "
                             f"got {self.channels!r}")
        if all(c is None for c in self.channels):
            raise ValueError("channels: at least one of the two inputs must be an image channel")
        if self.train.patch_size % 32:
            raise ValueError(f"train.patch_size {self.train.patch_size} must be divisible by 32 (the ResNet's "
                             f"stride)")
        if min(self.feature_size, self.head_filters, self.head_dense) < 1 or self.class_loss_weight < 0:
            raise ValueError("feature_size, head_filters and head_dense must be positive, class_loss_weight >= 0")

    @property
    def maxima(self) -> float:
        """The h-maxima height used: ``maxima_threshold`` or Mesmer's for the compartment."""
        return MAXIMA_THRESHOLD[self.compartment] if self.maxima_threshold is None else self.maxima_threshold


def _channel(image: np.ndarray, which: Channel) -> np.ndarray:
    if which is None:
        return np.zeros(image.shape[:2], dtype=np.float32)
    if which == "grey":
        return image[..., :3].mean(axis=-1, dtype=np.float64).astype(np.float32)
    if which >= image.shape[-1]:
        if image.shape[-1] == 1:  # a one-channel image: its channel is the only input, the other blank
            return np.zeros(image.shape[:2], dtype=np.float32)
        raise DataError(f"mesmer: channel {which} asked for, but the image has {image.shape[-1]} channels")
    return image[..., which].astype(np.float32)


def mesmer_input(image: np.ndarray, channels: tuple[Channel, Channel], prep: MesmerPreprocess) -> np.ndarray:
    """H x W x 2 float32 (nuclear, membrane) of an image, each channel preprocessed as ``mesmer_preprocess``.

    A blank or constant channel is all zeros. On a one-channel image a channel
    index other than 0 is blank, so the default ``(0, 1)`` runs a nuclear-only
    (or any one-channel) image as the nuclear input with a blank membrane.

    >>> x = mesmer_input(np.arange(64, dtype=np.uint8).reshape(8, 8), ("grey", None), MesmerPreprocess())
    >>> x.shape, float(x[..., 1].max()), 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    ((8, 8, 2), 0.0, True)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] < 1:
        raise DataError(f"mesmer: image must be H x W or H x W x C, got shape {image.shape}")
    out = np.zeros(image.shape[:2] + (2,), dtype=np.float32)
    for k, which in enumerate(channels):
        x = _channel(image, which)
        nonzero = x[x != 0]
        if nonzero.size:
            x = np.minimum(x, np.percentile(nonzero, prep.percentile))
        lo, hi = float(x.min()), float(x.max())
        if hi <= lo:
            continue
        x = (x - lo) / (hi - lo)
        if prep.clahe_kernel:
            x = equalize_adapthist(x, kernel_size=prep.clahe_kernel)
        out[..., k] = x
    return out


def relu_regression_loss(z: Any, target: Any) -> Any:
    """MSE of ``relu(z)`` against ``target`` (DeepCell's ReLU inner-distance head), with the gradient kept where
    the target is positive and ``z`` is not: ``(z - t)^2`` there, ``relu(z)^2`` on the background.

    Equal to the MSE of the ReLU output wherever ``z > 0`` or the target is 0. Without it the head can die: on
    DSB right -> left every output went below zero within 40 epochs (a ReLU passes no gradient there), the loss
    stayed at the MSE of predicting 0 and no cell was found.

    >>> import torch
    >>> float(relu_regression_loss(torch.tensor([-1.0, 2.0, -3.0]), torch.tensor([0.5, 1.0, 0.0])))
    1.0833333730697632
    """
    import torch
    import torch.nn.functional as F

    return torch.where(target > 0, (z - target) ** 2, F.relu(z) ** 2).mean()


def build_panopticnet(backbone: str, *, in_channels: int = 2, heads: tuple[int, ...] = (1, 3), location: bool = True,
                      feature_size: int = 256, head_filters: int = 64, head_dense: int = 128) -> Any:
    """DeepCell's PanopticNet on a torchvision ResNet: one semantic head per entry of ``heads`` (its outputs;
    1 is a regression, ReLU'd by :func:`relu_regression_loss` and at prediction, more are class logits), the heads'
    outputs concatenated (B x sum(heads) x H x W)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision.models import resnet

    widths = BACKBONES[backbone]

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    class SemanticHead(nn.Module):
        def __init__(self, n_out: int) -> None:
            super().__init__()
            self.upsample = nn.ModuleList(
                nn.Conv2d(feature_size if i == 0 else head_filters, head_filters, 3, padding=1) for i in range(3))
            self.dense = nn.Sequential(nn.Conv2d(head_filters, head_dense, 1), nn.BatchNorm2d(head_dense),
                                       nn.ReLU(inplace=True), nn.Conv2d(head_dense, n_out, 1))

        def forward(self, p3: torch.Tensor) -> torch.Tensor:
            x = p3
            for conv in self.upsample:
                x = up(conv(x))
            return self.dense(x)  # the regression head's ReLU is applied by the loss and by ``instances``

    class PanopticNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.location = location
            self.channels = nn.Conv2d(in_channels + (2 if location else 0), 3, 1)
            trunk = getattr(resnet, backbone)(weights=None)
            self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool, trunk.layer1)
            self.layer2, self.layer3, self.layer4 = trunk.layer2, trunk.layer3, trunk.layer4
            self.lateral = nn.ModuleList(nn.Conv2d(c, feature_size, 1) for c in widths)
            self.p3 = nn.Conv2d(feature_size, feature_size, 3, padding=1)
            self.heads = nn.ModuleList(SemanticHead(n) for n in heads)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.location:
                h, w = x.shape[-2:]
                rows = torch.arange(h, dtype=x.dtype, device=x.device) / max(h - 1, 1)
                cols = torch.arange(w, dtype=x.dtype, device=x.device) / max(w - 1, 1)
                grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))[None].expand(x.shape[0], -1, -1, -1)
                x = torch.cat([x, grid], dim=1)
            c3 = self.layer2(self.stem(self.channels(x)))
            c4 = self.layer3(c3)
            c5 = self.layer4(c4)
            merged = self.lateral[2](c5)
            merged = self.lateral[1](c4) + up(merged)
            merged = self.lateral[0](c3) + up(merged)
            p3 = self.p3(merged)
            return torch.cat([head(p3) for head in self.heads], dim=1)

    return PanopticNet()


class MesmerMethod(SemanticMethod):
    """Mesmer: PanopticNet (ResNet-FPN) with inner-distance and pixelwise heads, deep watershed."""

    name = "mesmer"
    version = "1"
    description = ("Mesmer (DeepCell PanopticNet; the 18-methods paper's Mesmer): ResNet-50 FPN, inner-distance + "
                   "pixelwise heads, deep watershed")
    requires = ("torch", "torchvision", "monai")
    extra = "mesmer"
    Config = MesmerConfig
    #: ``cpu``: ResNet-18, 128 px crops in batches of 4, 300 steps (~0.8 s of CPU a step on one thread, ~4 min).
    presets = {"cpu": {"backbone": "resnet18",
                       "train": {"patch_size": 128, "batch_size": 4, "epochs": 100, "steps_per_epoch": 3}}}

    def input_image(self, image: np.ndarray) -> np.ndarray:
        return mesmer_input(image, self.config.channels, self.config.preprocess)

    def build_network(self, *, pretrained: bool = False) -> Any:
        cfg = self.config
        network = build_panopticnet(cfg.backbone, location=cfg.location, feature_size=cfg.feature_size,
                                    head_filters=cfg.head_filters, head_dense=cfg.head_dense)
        if pretrained and cfg.backbone_weights:
            self._load_backbone(network, cfg.backbone_weights)
        return network

    @staticmethod
    def _load_backbone(network: Any, path: str) -> None:
        from cellbench.methods.torch_file import read_state_dict

        state = read_state_dict(path, what="mesmer backbone weights")
        names = {"conv1": "stem.0", "bn1": "stem.1", "layer1": "stem.4"}
        mapped = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in names:
                mapped[f"{names[head]}.{rest}"] = value
            elif head in ("layer2", "layer3", "layer4"):
                mapped[key] = value
        own = network.state_dict()
        wrong = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
        if not mapped or wrong:
            raise DataError(f"not a torchvision ResNet state dict of this backbone "
                            f"({'no ResNet tensors' if not mapped else 'misfits: ' + ', '.join(wrong[:5])})",
                            path=path)
        network.load_state_dict(mapped, strict=False)

    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        return (pixelwise_map(labels, dilation_radius=cfg.pixelwise_dilation),
                inner_distance(labels, erosion_width=cfg.inner_erosion, beta=cfg.inner_beta))

    def loss(self, output: Any, batch: dict[str, Any]) -> Any:
        distance = relu_regression_loss(output[:, :1], batch["regression"])
        return distance + self.config.class_loss_weight * weighted_cross_entropy(output[:, 1:], batch["classes"])

    def loss_name(self) -> str:
        return (f"MSE on the inner distance (ReLU, gradient kept where the target is positive) + "
                f"{self.config.class_loss_weight} x class-weighted cross-entropy")

    def instances(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        p_interior = softmax(maps[1:])[INTERIOR]
        labels = deep_watershed(np.maximum(maps[0], 0.0), p_interior, radius=cfg.radius, maxima_threshold=cfg.maxima,
                                interior_threshold=cfg.interior_threshold, maxima_smooth=cfg.maxima_smooth,
                                interior_smooth=cfg.interior_smooth, small_objects_threshold=cfg.small_objects,
                                fill_holes_threshold=cfg.fill_holes)
        return labels, p_interior
