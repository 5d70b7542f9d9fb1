"""``unet``: the NeurIPS-2022 report's UNET baseline, MONAI ``UNet`` with residual units, three classes.

As the NeurIPS-2022 challenge baseline (``model_training_3class.py``) and
the benchmark report that ran it: ``monai.networks.nets.UNet`` (2-D, three
input channels, channels 16-32-64-128-256, strides 2-2-2-2, two residual
units per block), trained from scratch to classify every pixel as
background, interior or boundary (the FeatureNet-style classes of the
18-methods paper, boundary = inner outline dilated by 1 px) with MONAI's
``DiceCELoss`` (softmax, Dice + cross-entropy), AdamW at lr 6e-4, batches of
8 patches of 256 px with the baseline's augmentations, sliding-window
inference with 256 px windows.

Instances: the baseline labels the connected pieces of the interior class;
here those pieces are the seeds of a watershed on the negative interior
probability over the foreground (interior + boundary), so each cell also
gets its boundary pixels (:func:`~cellbench.methods.adapters.semantic.postprocess.interior_watershed`).
Each instance's score is its mean interior probability.

torch and MONAI are imported inside the methods, so ``cellbench methods``
lists this one without them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from cellbench.methods.adapters.semantic.method import SemanticConfig, SemanticMethod
from cellbench.methods.adapters.semantic.postprocess import three_class_instances
from cellbench.methods.adapters.semantic.targets import three_class_map

__all__ = ["UNetConfig", "UNetMethod"]


@dataclass(frozen=True)
class UNetConfig(SemanticConfig):
    """MONAI U-Net settings, with the sections of :class:`SemanticConfig` (the baseline's defaults).

    Attributes:
        channels, strides, num_res_units: ``monai.networks.nets.UNet`` arguments
            (the baseline's 16-32-64-128-256, 2-2-2-2, 2). ``train.patch_size``
            must be divisible by the product of the strides.
        lambda_dice, lambda_ce: weights of the two terms of MONAI's ``DiceCELoss``.
        interior_threshold: a pixel is interior (a seed) above this probability.
        foreground_threshold: a pixel is foreground when 1 - P(background) exceeds it.
        min_seed, min_size: seeds and objects under these areas (px) are dropped.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 2
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    interior_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_seed: int = 16
    min_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.strides) != len(self.channels) - 1 or len(self.channels) < 2:
            raise ValueError(f"need one stride fewer than channels, got channels {self.channels}, "
                             f"strides {self.strides}")
        factor = int(np.prod(self.strides))
        if self.train.patch_size % factor:
            raise ValueError(f"train.patch_size {self.train.patch_size} must be divisible by the product of the "
                             f"strides ({factor})")
        if self.lambda_dice < 0 or self.lambda_ce < 0 or self.lambda_dice + self.lambda_ce == 0:
            raise ValueError(f"need non-negative loss weights, not both 0; got {self.lambda_dice}, {self.lambda_ce}")


class UNetMethod(SemanticMethod):
    """MONAI U-Net (residual units), background / interior / boundary, seeded watershed."""

    name = "unet"
    version = "1"
    description = ("NeurIPS-2022 UNET baseline: MONAI UNet with residual units, interior/boundary/background, "
                   "seeded watershed")
    requires = ("torch", "monai")
    extra = "unet"
    Config = UNetConfig
    #: ``cpu``: patches of 128 px, 300 epochs of 4 steps of 8 patches: ~0.26 s of CPU a step, ~5 min in all
    #: (the published 256 px patches cost ~4x a step).
    presets = {"cpu": {"train": {"patch_size": 128, "epochs": 300, "steps_per_epoch": 4}}}

    def build_network(self, *, pretrained: bool = False) -> Any:
        from monai.networks.nets import UNet

        cfg = self.config
        return UNet(spatial_dims=2, in_channels=3, out_channels=3, channels=tuple(cfg.channels),
                    strides=tuple(cfg.strides), num_res_units=cfg.num_res_units)

    def targets(self, labels: np.ndarray) -> tuple[np.ndarray, None]:
        return three_class_map(labels, width="fixed"), None

    @functools.cached_property
    def _dice_ce(self) -> Any:
        from monai.losses import DiceCELoss

        return DiceCELoss(softmax=True, to_onehot_y=True, lambda_dice=self.config.lambda_dice,
                          lambda_ce=self.config.lambda_ce)

    def loss(self, output: Any, batch: dict[str, Any]) -> Any:
        return self._dice_ce(output, batch["classes"])

    def loss_name(self) -> str:
        return f"MONAI DiceCELoss (softmax; dice x{self.config.lambda_dice}, CE x{self.config.lambda_ce})"

    def instances(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        return three_class_instances(maps, interior_threshold=cfg.interior_threshold,
                                     foreground_threshold=cfg.foreground_threshold, min_seed=cfg.min_seed,
                                     min_size=cfg.min_size)
