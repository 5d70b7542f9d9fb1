"""The network: Hugging Face's ``Mask2FormerForUniversalSegmentation`` on a backbone of :mod:`.backbones`.

Everything inside is ``transformers``': the backbone, the pixel decoder
(multi-scale deformable attention over strides 8-32, an FPN down to stride 4),
the masked-attention transformer decoder, the class layer, and the loss with
its Hungarian matcher (mask BCE and dice on uncertainty-sampled points, class
cross-entropy with a down-weighted "no object", every decoder layer
supervised). cellbench chooses its sizes from the method's config
(:func:`network_config`) and reads its outputs (:func:`forward`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellbench.methods.adapters.mask2former.backbones import backbone_config
from cellbench.methods.adapters.mask2former.config import STRIDE, Mask2FormerConfig

__all__ = ["build_network", "forward", "losses", "network_config", "pixel_values"]

#: Parameters (name prefixes) that depend on the number of classes.
CLASS_HEADS = ("class_predictor.", "criterion.empty_weight")
#: Name prefix of the backbone's parameters in the network.
BACKBONE_PREFIX = "model.pixel_level_module.encoder."


@contextlib.contextmanager
def _quiet_backbone_check() -> Iterator[None]:
    """Silence Mask2FormerConfig's warning that a ResNet backbone "may not be compatible": Hugging Face
    lists only Swin as supported because its checkpoints are Swin ones, but the network is Mask2Former's
    ResNet-50 one (stride-4 to 32 features, as the original's). Only that module's logger, for the call."""
    logger = logging.getLogger("transformers.models.mask2former.configuration_mask2former")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def network_config(cfg: Mask2FormerConfig, n_classes: int) -> Any:
    """The ``transformers.Mask2FormerConfig`` of a network for ``n_classes`` classes with ``cfg``'s sizes.

    Its ``id2label`` names nothing (cellbench keeps the class names); ``num_labels`` is ``n_classes``, the
    class layer has one more output ("no object").
    """
    from transformers import Mask2FormerConfig as HFConfig

    with _quiet_backbone_check():
        return HFConfig(
            backbone_config=backbone_config(cfg.backbone), num_labels=n_classes,
            num_queries=cfg.num_queries, hidden_dim=cfg.hidden_dim, feature_size=cfg.feature_size,
            mask_feature_size=cfg.feature_size, encoder_layers=cfg.encoder_layers,
            decoder_layers=cfg.decoder_layers, num_attention_heads=cfg.num_heads,
            dim_feedforward=cfg.dim_feedforward, encoder_feedforward_dim=cfg.encoder_feedforward_dim,
            train_num_points=cfg.train_num_points, class_weight=cfg.class_weight, mask_weight=cfg.mask_weight,
            dice_weight=cfg.dice_weight, no_object_weight=cfg.no_object_weight,
        )


def build_network(cfg: Mask2FormerConfig, n_classes: int) -> nn.Module:
    """A randomly initialised Mask2Former (Hugging Face's initialisation; seed torch first to repeat it)."""
    from transformers import Mask2FormerForUniversalSegmentation

    with _quiet_backbone_check():
        return Mask2FormerForUniversalSegmentation(network_config(cfg, n_classes))


def pixel_values(images: torch.Tensor, scale: float) -> tuple[torch.Tensor, tuple[int, int]]:
    """``images`` (B x 3 x H x W) resized by ``scale`` and zero-padded to multiples of the backbone's stride;
    the resized size (before padding).

    >>> x, size = pixel_values(torch.zeros(1, 3, 50, 70), 1.0)
    >>> tuple(x.shape), size
    ((1, 3, 64, 96), (50, 70))
    """
    h, w = images.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size != (h, w):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    pad_h, pad_w = -size[0] % STRIDE, -size[1] % STRIDE
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    return images, size


def forward(model: nn.Module, images: torch.Tensor, *, scale: float, auxiliary: bool = False) -> Any:
    """The network's output on ``images`` (B x 3 x H x W, preprocessed): ``class_queries_logits``
    (B x Q x classes + 1), ``masks_queries_logits`` (B x Q x H' x W', stride 4 of the padded input) and, with
    ``auxiliary``, the earlier decoder layers' (``auxiliary_logits``)."""
    x, _ = pixel_values(images, scale)
    return model(pixel_values=x, output_auxiliary_logits=auxiliary)


def losses(model: nn.Module, output: Any, mask_labels: list[torch.Tensor],
           class_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mask2Former's weighted loss terms for ``output`` (from :func:`forward` with ``auxiliary``): Hugging
    Face's matcher and criterion, one entry per term and decoder layer (``loss_mask``, ``loss_dice``,
    ``loss_cross_entropy``, then ``loss_mask_0`` ... for the earlier layers). Target masks are N x S x S at
    any resolution: both sides are sampled at the same normalised points."""
    return model.get_loss_dict(
        masks_queries_logits=output.masks_queries_logits, class_queries_logits=output.class_queries_logits,
        mask_labels=mask_labels, class_labels=class_labels, auxiliary_predictions=output.auxiliary_logits)
