"""The settings every detector of the family shares: backbone, pretrained weights, the training loop, threads.

:class:`DetectorConfig` holds them once, with their checks; each method's
config (``MaskRCNNConfig`` and the configs derived from it, ``SOLOv2Config``)
adds its own network's and prediction's settings. Its fields are what
:func:`~cellbench.methods.adapters.detection.training.train_detector` reads
(:class:`~cellbench.methods.adapters.detection.training.LoopConfig`). Importing
it needs no torch, so a config validates without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cellbench.methods.adapters.detection.backbones import BACKBONES, REGISTRY
from cellbench.methods.device import check_threads
from cellbench.methods.preprocess import PreprocessConfig

__all__ = ["DetectorConfig"]


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the family's backbones, weights and training loop.

    Attributes:
        backbone: a name of :data:`~cellbench.methods.adapters.detection.backbones.BACKBONES`, with an FPN:
            ``resnet50`` (published), ``resnet34``, ``resnet18``, ``swin_t``, ``swin_s``, ``resnest50``,
            ``res2net50``, ``res2net101``, ``hrnet_w32``, ``vovnet39`` (VoVNetV2-39, CenterMask's).
        pretrained: weights to start from: a file, or a name in the pretrained-model
            registry (``cellbench pretrained list``): a whole Mask R-CNN, or an ImageNet classifier of the
            backbone (its trunk only); None trains from scratch.
        trainable_layers: backbone parts trained, counted from the top of stem + 4 stages (0-5); None: 5
            from scratch, 3 when pretrained (torchvision: the stem and the first stage frozen).
        scale: factor images are resized by before the network (2 for ~20 px nuclei).
        epochs: training epochs; an epoch is ``crops_per_epoch`` crops.
        crops_per_epoch: None: as many crops as tile the training images once (at least one batch).
        batch_size, patch_size: crops per step and their side (image pixels).
        optimizer, lr, momentum, weight_decay: the optimiser (momentum for SGD only).
        warmup_iters: steps of linear learning-rate warm-up; a cosine decay follows.
        augment: random flips and 90-degree rotations of the crops.
        min_area: instance pixels a crop must show for the instance to be a target.
        val_every: validate (F1 at IoU 0.5, class-agnostic) every this many epochs and at the end;
            the best epoch's weights are kept when ``keep_best``. 0 validates only at the end.
        keep_best: end with the best validated epoch's weights (else the last epoch's).
        preprocess: cellbench preprocessing (percentile normalisation by default).
        threads: torch CPU threads for training and prediction; 0 leaves torch's default (one per
            core). The count changes the trained weights (see ``torch_threads``).
    """

    backbone: str = "resnet50"
    pretrained: str | None = None
    trainable_layers: int | None = None
    scale: float = 1.0
    epochs: int = 50
    crops_per_epoch: int | None = None
    batch_size: int = 2
    patch_size: int = 512
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    augment: bool = True
    min_area: int = 4
    val_every: int = 1
    keep_best: bool = True
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    threads: int = 0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {self.backbone!r}")
        if self.batch_size < REGISTRY[self.backbone].min_batch:
            raise ValueError(f"backbone {self.backbone} trains on batch_size >= {REGISTRY[self.backbone].min_batch}, "
                             f"got {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.patch_size < 32 or self.scale <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, patch_size >= 32, scale > 0; got {self.epochs}, "
                             f"{self.batch_size}, {self.patch_size}, {self.scale}")
        if self.trainable_layers is not None and not 0 <= self.trainable_layers <= 5:
            raise ValueError(f"trainable_layers must be 0-5, got {self.trainable_layers}")
        check_threads(self.threads)

    @property
    def trained_layers(self) -> int:
        """``trainable_layers``, or its default: 5 from scratch, 3 when pretrained."""
        return self.trainable_layers if self.trainable_layers is not None else (3 if self.pretrained else 5)
