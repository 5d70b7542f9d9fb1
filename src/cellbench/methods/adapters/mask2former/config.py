"""The settings of method ``mask2former``: network sizes, training recipe, prediction thresholds.

The defaults are the published ones where Mask2Former has them: the network
of Cheng et al. (2022) as Hugging Face builds it (256 channels, 6 deformable
encoder layers in the pixel decoder, 9 masked-attention decoder layers, 100
queries, 12544 points per mask in the loss), and the recipe of its COCO
instance configs, which MMDetection 2.28 (the 18-methods paper's toolbox)
copies: AdamW at 1e-4 with weight decay 0.05 (none on norms and
embeddings), the backbone at a tenth of the rate, gradients clipped to a norm
of 0.01, the rate divided by 10 at 88.9 % and 96.3 % of the steps, and 50
epochs as the paper ran it. The paper's batch was 36 on 4 GPUs; the default
here is Mask2Former's own 16 (for which its rate was chosen).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cellbench.methods.device import check_threads
from cellbench.methods.adapters.mask2former.backbones import BACKBONES
from cellbench.methods.preprocess import PreprocessConfig

__all__ = ["Mask2FormerConfig", "input_side"]

#: The network's input sides are multiples of this (the backbone's last stride).
STRIDE = 32


def input_side(crop_size: int, scale: float) -> int:
    """The side of a training crop as the network sees it: ``crop_size`` resized by ``scale``.

    >>> input_side(256, 1.5)
    384
    """
    return round(crop_size * scale)


@dataclass(frozen=True)
class Mask2FormerConfig:
    """Mask2Former settings (Hugging Face ``Mask2FormerConfig``'s names where it has one).

    Attributes:
        backbone: a name of :data:`~cellbench.methods.adapters.mask2former.backbones.BACKBONES`: ``resnet50`` (the
            18-methods paper's), ``swin_t``, ``swin_s``, ``swin_t_w48`` (Swin-T's depths at half width, for
            CPUs), ``tiny`` (tests).
        pretrained: weights to start from: a file (``.safetensors``, or a torch state dict read with
            ``weights_only``), a Hugging Face model folder (``config.json`` + ``model.safetensors``, e.g. a
            downloaded ``facebook/mask2former-swin-tiny-coco-instance``) or a name in the pretrained-model
            registry: a whole Mask2Former (its class layer re-initialised for the task's classes; the
            backbone and sizes must be the config's), or an image classifier of the backbone (Hugging Face's
            ``SwinForImageClassification`` / ``ResNetForImageClassification``), loaded into the backbone
            alone; None trains from scratch.
        num_queries: object queries, the most instances one tile can hold.
        hidden_dim: channels of the transformer decoder.
        feature_size: channels of the pixel decoder and of the mask features (a multiple of 32: group norm).
        encoder_layers: deformable-attention layers of the pixel decoder.
        decoder_layers: Hugging Face's count: the masked-attention layers plus one (10: 9 layers, each
            predicting masks and classes, and the prediction from the queries before the first).
        num_heads: attention heads of both transformers.
        dim_feedforward, encoder_feedforward_dim: feed-forward widths of the decoder and the pixel decoder.
        train_num_points: points per mask the loss and the matcher sample (uncertainty-weighted).
        class_weight, mask_weight, dice_weight: weights of the cross-entropy, mask BCE and dice terms, in
            the matching cost and the loss.
        no_object_weight: weight of the "no object" class in the cross-entropy.
        scale: factor images are resized by before the network (masks come out at 1/4 of its input, so
            small nuclei gain from 2).
        crop_size: side of the square training crops (image pixels); predicted tiles default to this size.
        epochs: training epochs; an epoch is ``crops_per_epoch`` crops.
        crops_per_epoch: None: as many crops as tile the training images once (at least one batch).
        batch_size: crops per step.
        lr, weight_decay: AdamW's rate and weight decay (no decay on norms, embeddings, position tables).
        backbone_lr_factor: the backbone's rate relative to ``lr``.
        clip_grad: the whole model's gradient norm is clipped to this (None: no clipping).
        lr_drops: fractions of the training's steps after which the rate is divided by 10.
        warmup_iters: steps of linear warm-up from 0.1 % of the rate.
        augment: random flips and 90-degree rotations of the crops.
        min_area: instance pixels a crop must show for the instance to be a target.
        val_every: validate (F1 at IoU 0.5, overlaps kept) every this many epochs and at the end;
            0 validates only at the end.
        keep_best: end with the best validated epoch's weights (else the last epoch's).
        score_threshold: instances scoring below this are dropped (score: class probability times the
            mean mask probability inside the mask, Mask2Former's instance score).
        mask_threshold: mask probability a pixel needs (0.5: Mask2Former's logit > 0).
        max_instances: at most this many instances per tile, best first (None: ``num_queries``, Mask2Former's
            ``test_topk_per_image``).
        preprocess: cellbench preprocessing (percentile normalisation by default).
        threads: torch CPU threads for training and prediction; 0 leaves torch's default.
    """

    backbone: str = "resnet50"
    pretrained: str | None = None
    num_queries: int = 100
    hidden_dim: int = 256
    feature_size: int = 256
    encoder_layers: int = 6
    decoder_layers: int = 10
    num_heads: int = 8
    dim_feedforward: int = 2048
    encoder_feedforward_dim: int = 1024
    train_num_points: int = 12544
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    scale: float = 1.0
    crop_size: int = 512
    epochs: int = 50
    crops_per_epoch: int | None = None
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_factor: float = 0.1
    clip_grad: float | None = 0.01
    lr_drops: tuple[float, ...] = (0.889, 0.963)
    warmup_iters: int = 10
    augment: bool = True
    min_area: int = 4
    val_every: int = 1
    keep_best: bool = True
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    max_instances: int | None = None
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    threads: int = 0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {self.backbone!r}")
        counts = {"num_queries": self.num_queries, "hidden_dim": self.hidden_dim, "num_heads": self.num_heads,
                  "encoder_layers": self.encoder_layers, "dim_feedforward": self.dim_feedforward,
                  "encoder_feedforward_dim": self.encoder_feedforward_dim, "train_num_points": self.train_num_points,
                  "epochs": self.epochs, "batch_size": self.batch_size}
        small = [f"{k}={v}" for k, v in counts.items() if v < 1]
        if small:
            raise ValueError(f"need at least 1 for {', '.join(small)}")
        if self.decoder_layers < 2:
            raise ValueError(f"decoder_layers counts the query prediction too: at least 2, got {self.decoder_layers}")
        if self.feature_size < 32 or self.feature_size % 32:
            raise ValueError(f"feature_size must be a multiple of 32 (group norm of 32 groups), got "
                             f"{self.feature_size}")
        if self.hidden_dim % self.num_heads or self.feature_size % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) and feature_size ({self.feature_size}) must be "
                             f"multiples of num_heads ({self.num_heads})")
        if self.scale <= 0 or self.crop_size < STRIDE or input_side(self.crop_size, self.scale) % STRIDE:
            raise ValueError(f"crop_size x scale must be a multiple of {STRIDE} px (the backbone's stride), got "
                             f"{self.crop_size} x {self.scale}")
        if self.lr <= 0 or self.weight_decay < 0 or self.backbone_lr_factor < 0:
            raise ValueError(f"need lr > 0, weight_decay >= 0, backbone_lr_factor >= 0; got {self.lr}, "
                             f"{self.weight_decay}, {self.backbone_lr_factor}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or None, got {self.clip_grad}")
        if any(not 0 < f <= 1 for f in self.lr_drops) or list(self.lr_drops) != sorted(self.lr_drops):
            raise ValueError(f"lr_drops must be increasing fractions in (0, 1], got {list(self.lr_drops)}")
        if self.max_instances is not None and self.max_instances < 1:
            raise ValueError(f"max_instances must be at least 1 or None, got {self.max_instances}")
        if not 0 <= self.mask_threshold < 1:
            raise ValueError(f"mask_threshold must be in [0, 1), got {self.mask_threshold}")
        check_threads(self.threads)
