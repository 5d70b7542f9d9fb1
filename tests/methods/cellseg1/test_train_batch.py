"""Batched encoding in CellSeg1 training: the same gradient as one patch at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellbench.methods.adapters.cellseg1.backbones import tiny_sam
from cellbench.methods.adapters.cellseg1.inference import to_uint8_rgb
from cellbench.methods.adapters.cellseg1.lora import LoRA
from cellbench.methods.adapters.cellseg1.prompts import sample_points
from cellbench.methods.adapters.cellseg1.train import (
    TrainConfig,
    _batch_loss,
    _chunks,
    _set_lora_train,
    make_patches,
    train_lora,
)


def _adapted(dropout: float = 0.0):
    """A tiny SAM with LoRA whose B matrices are non-zero, so every LoRA weight gets a gradient."""
    backbone = tiny_sam()
    LoRA(dropout=dropout).apply(backbone.model)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for p in backbone.model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    _set_lora_train(backbone.model, True)
    return backbone


def _items(disk_data, n: int = 3):
    image, labels = disk_data
    rng = np.random.default_rng(0)
    patches = make_patches(to_uint8_rgb(image), labels, size=64, overlap=0.5)[:n]
    items = [(img, lab, sample_points(lab, rng, max_positive=4, max_negative=2, min_cell_area=20)) for img, lab in patches]
    assert all(len(s) for _, _, s in items)
    return items


def _lora_grads(backbone, items, encode_batch: int) -> dict[str, torch.Tensor]:
    backbone.model.zero_grad(set_to_none=True)
    for start in range(0, len(items), encode_batch):
        losses = _batch_loss(backbone, items[start : start + encode_batch], encoder_grad=True)
        sum(bce + mse for bce, mse in losses).backward()
    return {n: p.grad.clone() for n, p in backbone.model.named_parameters() if p.requires_grad}


def test_batched_encoder_gives_the_one_at_a_time_gradient(disk_data):
    backbone = _adapted()
    items = _items(disk_data)
    single = _lora_grads(backbone, items, encode_batch=1)
    batched = _lora_grads(backbone, items, encode_batch=3)
    assert single.keys() == batched.keys()
    assert any("image_encoder" in n for n in single) and any("mask_decoder" in n for n in single)
    for name, grad in single.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(batched[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_training_with_batched_encoding_sees_the_same_losses(disk_data):
    """One epoch of 6 patches before its one optimiser step: the same patches, points and loss.

    (Weights after AdamW are not compared: Adam divides each gradient element
    by its own magnitude, so rounding noise in near-zero elements becomes a
    full step; the gradients themselves are compared above.)
    """
    image, labels = disk_data
    data = [(to_uint8_rgb(image), labels)]
    losses = []
    for encode_batch in (1, 4):  # 4: encoder batches of 4 and 2
        backbone = tiny_sam()
        LoRA(dropout=0.0).apply(backbone.model)
        config = TrainConfig(
            epochs=1, patch_size=64, min_patches=6, batch_size=3, grad_accum=2,
            max_positive=4, max_negative=2, encode_batch=encode_batch,
        )
        history, _ = train_lora(backbone, data, config=config, seed=3)
        losses.append((history[0].loss, history[0].bce, history[0].mse))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_encoder_batches_never_straddle_an_optimiser_step():
    chunks = _chunks(np.arange(10), per_step=4, size=3)
    assert [c.tolist() for c, _ in chunks] == [[0, 1, 2], [3], [4, 5, 6], [7], [8, 9]]
    assert [step for _, step in chunks] == [False, True, False, True, True]


def test_encode_batch_must_be_positive():
    with pytest.raises(ValueError, match="train.encode_batch must be >= 1"):
        TrainConfig(encode_batch=0)
