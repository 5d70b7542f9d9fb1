"""The two SAM calls CellSeg1 makes: encode an image once, decode many points against it."""

from __future__ import annotations

import torch

from cellbench.methods.adapters.cellseg1.backbones import Backbone

__all__ = ["decode_points", "encode"]


def encode(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Image embeddings (B x C x h x w) of normalised B x 3 x S x S input."""
    return backbone.model.image_encoder(images)


def decode_points(
    backbone: Backbone,
    embedding: torch.Tensor,
    points: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    box_half_side: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One mask and one score per point prompt, all against one image embedding.

    Args:
        embedding: 1 x C x h x w, from :func:`encode`.
        points: N x 2 ``(x, y)`` pixel coordinates in the encoder input frame.
        labels: N prompt labels (1 = foreground point, SAM's meaning); all 1 by default.
        box_half_side: when given, each point is prompted as the square box of
            this half side (input-frame pixels) centred on it, for backbones
            that learned boxes but not points (LiteMedSAM); ``labels`` are then unused.

    Returns:
        ``(logits, iou)``: N x 4h x 4w low-resolution mask logits (the first
        mask token, multimask output off, as CellSeg1) and the N predicted
        IoUs, which CellSeg1 reads as cell probabilities.
    """
    model = backbone.model
    n = points.shape[0]
    if box_half_side is not None:
        p = points.float()
        sparse, dense = model.prompt_encoder(
            points=None, boxes=torch.cat([p - box_half_side, p + box_half_side], dim=1), masks=None
        )
    else:
        if labels is None:
            labels = torch.ones(n, dtype=torch.int64, device=points.device)
        sparse, dense = model.prompt_encoder(
            points=(points[:, None, :].float(), labels[:, None]), boxes=None, masks=None
        )
    logits, iou = model.mask_decoder(
        image_embeddings=embedding,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return logits[:, 0], iou[:, 0]
