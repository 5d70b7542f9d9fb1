"""``maunet``: MAU-Net, the saltfish team's NeurIPS-2022 entry and the NeurIPS report's best model.

What saltfish built (github Woof6/neurips22-cellseg_saltfish, ``net.py``,
``train.py``, ``predict.py``, ``data_preprocess.py``,
``dist_transform_preprocess.py``; the report ran the ResNet-50 variant):

* **Network** (``ResUNETR_s2``): a ResNet-50 encoder (torchvision, ImageNet
  weights) whose input and five stages (stem before max-pooling, layers
  1-4) each pass through a MONAI ``UnetrBasicBlock`` (residual, instance
  norm) of width 24, 24, 48, 96, 192, 384; **two** decoders of five MONAI
  ``UnetrUpBlock`` each (transposed convolution, concatenation with the
  skip, residual block) back to full resolution; a 1x1 ``UnetOutBlock``
  head on each: 4 class logits on the first, 1 distance value on the
  second.
* **Targets**: background / interior / boundary, the boundary an inner
  outline dilated by ``ceil(sqrt(area) / 40)`` px per cell; and a distance
  map, per cell ``1 / (1 + (max d - d) / sqrt(area))`` with ``d`` the
  distance transform of the interior class
  (:func:`~cellbench.methods.adapters.semantic.targets.center_weight_map`).
* **Loss**: softmax over the 4 logits, the first 3 against the one-hot
  classes with MONAI ``DiceFocalLoss(softmax=False)``, plus a weighted L1
  on the distance (mean |output| outside cells + mean |output - target|
  inside). AdamW lr 6e-4, StepLR x0.95 every 10 epochs, 512 px patches,
  batch 16 (the report: batch 8, 100 epochs), zoom 0.25-2x on every patch
  and the MONAI baseline's other augmentations.
* **Prediction**: sliding windows of 512 px, logits averaged over input
  scales 1, 1.25, 1.5; foreground P(background) < 0.3, interior
  P(interior) > 0.7; then a two-pass watershed on the smoothed distance
  (:func:`~cellbench.methods.adapters.semantic.postprocess.saltfish_watershed`).

Built here on segmentation-models-pytorch and MONAI: the encoder is
``smp.encoders.get_encoder(backbone)`` (smp's ResNet returns exactly the
input and the five stages saltfish taps, so ``backbone`` can be any smp
encoder), the blocks and heads are MONAI's own, as in ``net.py``.

Where cellbench had to choose (the reference leaves it open or cannot run here):

1. Architecture name: "MAU" is "modality-aware anti-ambiguity", not smp's
   MA-Net (multi-scale attention); the network is saltfish's ResNet-UNETR
   with two decoders, not ``smp.MAnet``.
2. Encoder weights: saltfish starts from torchvision's ImageNet ResNet-50;
   cellbench downloads nothing, so ``encoder_weights`` is None (random
   initialisation) unless a name smp knows (e.g. ``imagenet``, when the file
   is in torch's cache) is given. smp's ResNet is torchvision's, same layers.
3. One model, not their two-model ensemble (ResNet-50 + wide ResNet-50 with
   layer 4 removed, logits averaged): the report ran the ResNet-50 one.
4. The fourth class logit, which saltfish's loss never targets (softmax over
   4, the first 3 scored), is kept, as are the loss quirks that follow from
   it (MONAI's focal term reads the probabilities as logits).
5. Boundary pixels: saltfish paints cells one by one, so a later cell's
   boundary overwrites an earlier cell's interior and vice versa; here the
   union of all dilated boundaries is boundary, and interior the rest of
   the cells (interior pieces under 16 px are background, as theirs).
6. Post-processing on scikit-image: the growth steps are watersheds on the
   negative smoothed distance (saltfish: ``cv2.watershed`` on a colour
   rendering of the binary masks, where the masks' edges steer the flood);
   distance peaks are taken anywhere, not only ``min_distance`` away from the
   image border (``exclude_border=False``: cells at the border keep their
   seed); the size filter drops cells under a tenth of the mean cell area
   as theirs does.
7. Normalisation: each channel between its 1st and 99th percentile of all
   pixels (saltfish: of the non-zero pixels, via uint8), clipped to [0, 1].
8. Scores (saltfish has none): the mean interior probability of each
   instance, so COCO metrics apply.
9. The training set is flattened first (each pixel belongs to one cell), by
   the config's ``flatten`` policy.

torch, smp and MONAI are imported inside the methods, so ``cellbench methods``
lists this one without them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cellbench.errors import DataError
from cellbench.methods.adapters.semantic.inference import InferenceSettings
from cellbench.methods.adapters.semantic.method import SemanticConfig, SemanticMethod
from cellbench.methods.adapters.semantic.patches import AugmentSettings
from cellbench.methods.adapters.semantic.postprocess import saltfish_watershed, softmax
from cellbench.methods.adapters.semantic.targets import center_weight_map, three_class_map
from cellbench.methods.adapters.semantic.train_loop import TrainSettings

__all__ = ["MAUNetAugment", "MAUNetConfig", "MAUNetInference", "MAUNetMethod", "MAUNetTrain", "build_maunet"]

_CLASS_LOGITS = 4  # saltfish: num_class + 1 outputs, the first 3 scored


@dataclass(frozen=True)
class MAUNetTrain(TrainSettings):
    """saltfish's schedule: 512 px patches, batch 8 (the report's), 100 epochs, StepLR x0.95 every 10 epochs."""

    patch_size: int = 512
    lr_step: int = 10
    lr_gamma: float = 0.95


@dataclass(frozen=True)
class MAUNetAugment(AugmentSettings):
    """saltfish zooms every patch by 0.25-2x; the other augmentations are the baseline's."""

    zoom_prob: float = 1.0
    zoom_min: float = 0.25
    zoom_max: float = 2.0


@dataclass(frozen=True)
class MAUNetInference(InferenceSettings):
    """saltfish averages the logits over input scales 1, 1.25 and 1.5."""

    scales: tuple[float, ...] = (1.0, 1.25, 1.5)


@dataclass(frozen=True)
class MAUNetConfig(SemanticConfig):
    """MAU-Net settings, with the sections of :class:`SemanticConfig` (saltfish's defaults).

    Attributes:
        backbone: smp encoder name (``resnet50`` as published; ``resnet18`` /
            ``resnet34`` for a CPU).
        encoder_weights: smp pretrained-weights name for the encoder (e.g.
            ``imagenet``, read from torch's cache); None: random initialisation.
        width: width of the first skip block and of the decoders' last level
            (saltfish's ``feature_size2``, 24); deeper levels double it.
        foreground_threshold: a pixel is foreground when 1 - P(background) exceeds it (saltfish 0.7).
        interior_threshold: interior where P(interior) exceeds it (0.7).
        core_fraction: first-pass seeds where the smoothed distance exceeds this fraction of its maximum (0.85).
        peak_fraction: second-pass seeds are distance peaks above this fraction of the maximum (0.6).
        min_interior: interior pieces under this area (px) are dropped (16).
        small_fraction: cells under this fraction of the mean cell area are dropped (0.1).
    """

    backbone: str = "resnet50"
    encoder_weights: str | None = None
    width: int = 24
    foreground_threshold: float = 0.7
    interior_threshold: float = 0.7
    core_fraction: float = 0.85
    peak_fraction: float = 0.6
    min_interior: int = 16
    small_fraction: float = 0.1
    train: MAUNetTrain = field(default_factory=MAUNetTrain)
    augment: MAUNetAugment = field(default_factory=MAUNetAugment)
    inference: MAUNetInference = field(default_factory=MAUNetInference)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train.patch_size % 32:
            raise ValueError(f"train.patch_size {self.train.patch_size} must be divisible by 32 (five 2x "
                             f"down-samplings of the encoder)")
        if self.width < 1:
            raise ValueError(f"width must be positive, got {self.width}")
        if not isinstance(self.backbone, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.backbone):
            # smp passes tu-<name> to timm, which fetches a model description for hf-hub:<repo> names
            raise ValueError(f"backbone must be an smp encoder name (letters, digits, '_', '.', '-'), "
                             f"got {self.backbone!r:.80}")


def build_maunet(backbone: str, *, width: int = 24, encoder_weights: str | None = None) -> Any:
    """saltfish's network on an smp encoder: skip blocks on the input and five stages, two decoders, two heads.

    Its output is one tensor: 4 class logits then the distance channel (B x 5 x H x W).
    """
    import segmentation_models_pytorch as smp
    import torch
    from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock

    try:
        encoder = smp.encoders.get_encoder(backbone, in_channels=3, depth=5, weights=encoder_weights)
    except (KeyError, ValueError, OSError, RuntimeError) as exc:
        raise DataError(f"maunet: cannot build encoder {backbone!r} with weights {encoder_weights!r} "
                        f"({type(exc).__name__}: {exc})") from exc
    widths = [width, width, 2 * width, 4 * width, 8 * width, 16 * width]

    def decoder() -> Any:
        return torch.nn.ModuleList(
            UnetrUpBlock(spatial_dims=2, in_channels=widths[i + 1], out_channels=widths[i], kernel_size=3,
                         upsample_kernel_size=2, norm_name="instance", res_block=True)
            for i in reversed(range(5)))

    class MAUNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.skips = torch.nn.ModuleList(
                UnetrBasicBlock(spatial_dims=2, in_channels=c, out_channels=w, kernel_size=3, stride=1,
                                norm_name="instance", res_block=True)
                for c, w in zip(encoder.out_channels, widths))
            self.class_decoder, self.distance_decoder = decoder(), decoder()
            self.class_head = UnetOutBlock(spatial_dims=2, in_channels=width, out_channels=_CLASS_LOGITS)
            self.distance_head = UnetOutBlock(spatial_dims=2, in_channels=width, out_channels=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = [block(f) for block, f in zip(self.skips, self.encoder(x))]

            def decode(blocks: Any) -> torch.Tensor:
                y = skips[-1]
                for block, skip in zip(blocks, reversed(skips[:-1])):
                    y = block(y, skip)
                return y

            return torch.cat([self.class_head(decode(self.class_decoder)),
                              self.distance_head(decode(self.distance_decoder))], dim=1)

    return MAUNet()


class MAUNetMethod(SemanticMethod):
    """saltfish's MAU-Net: ResNet encoder, class and distance decoders, two-pass watershed."""

    name = "maunet"
    version = "1"
    description = ("MAU-Net (NeurIPS-2022 saltfish): ResNet-50 encoder, 3-class + distance decoders, "
                   "two-pass watershed")
    requires = ("torch", "segmentation_models_pytorch", "monai")
    extra = "unet,smp"  # MONAI (the blocks, losses, sliding windows) and segmentation-models-pytorch
    Config = MAUNetConfig
    #: ``cpu``: a ResNet-18 encoder, 256 px patches in batches of 4, 200 steps, one test-time scale: ~5 s of
    #: CPU a step (ResNet-50 at 512 px in batches of 8 is ~15x that), ~15 min in all.
    presets = {"cpu": {"backbone": "resnet18",
                       "train": {"patch_size": 256, "batch_size": 4, "epochs": 100, "steps_per_epoch": 2},
                       "inference": {"scales": [1.0]}}}

    def build_network(self, *, pretrained: bool = False) -> Any:
        cfg = self.config
        return build_maunet(cfg.backbone, width=cfg.width, encoder_weights=cfg.encoder_weights if pretrained else None)

    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        classes = three_class_map(labels, width="scaled")
        return classes, center_weight_map(labels, classes)

    @functools.cached_property
    def _dice_focal(self) -> Any:
        from monai.losses import DiceFocalLoss

        return DiceFocalLoss(softmax=False)

    def loss(self, output: Any, batch: dict[str, Any]) -> Any:
        import torch
        from monai.networks import one_hot

        probs = torch.softmax(output[:, :_CLASS_LOGITS], dim=1)[:, :3]
        class_loss = self._dice_focal(probs, one_hot(batch["classes"], 3))
        distance, target = output[:, _CLASS_LOGITS:], batch["regression"]
        outside, inside = target == 0, target > 0
        distance_loss = (distance.abs() * outside).sum() / (outside.sum() + 1e-3) + \
            (distance * inside - target).abs().sum() / (inside.sum() + 1e-3)
        return class_loss + distance_loss

    def loss_name(self) -> str:
        return "MONAI DiceFocalLoss on softmax classes + weighted L1 on the distance map (saltfish)"

    def instances(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        prob = softmax(maps[:_CLASS_LOGITS])
        labels = saltfish_watershed(
            prob[0], prob[1], maps[_CLASS_LOGITS], foreground_threshold=cfg.foreground_threshold,
            interior_threshold=cfg.interior_threshold, core_fraction=cfg.core_fraction,
            peak_fraction=cfg.peak_fraction, min_interior=cfg.min_interior, small_fraction=cfg.small_fraction)
        return labels, prob[1]
