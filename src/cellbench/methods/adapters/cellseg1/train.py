"""CellSeg1 training: LoRA on a frozen SAM from image + point pairs.

Each training image is cut into 256 x 256 patches with 50 % overlap,
replicated to at least 32 patches; each patch is augmented, resized to the
encoder input, encoded once, and up to 30 positive and 15 negative interior
points are decoded against its embedding. Loss: binary cross-entropy of the
mask logits against the cell under each positive point, plus the mean squared
error of SAM's IoU head against 1 (cell) / 0 (background) for every point.
AdamW with OneCycleLR; gradients of ``batch_size * grad_accum`` patches are
summed per optimiser step.

``encode_batch`` patches share one encoder forward and backward (each
patch's points are still decoded against its own embedding). The gradient is
the sum of the one-patch gradients either way, because every SAM layer is
frozen in eval mode (no batch statistics); what batching changes is speed and
memory: the encoder runs its matrix products on B images at once, and holds
B images' activations for the backward. With LoRA dropout > 0 the dropout
masks are drawn per call, so a batch draws different (equally distributed)
masks than B single calls.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cellbench.methods.adapters.cellseg1.augment import AugmentConfig, augment
from cellbench.methods.adapters.cellseg1.backbones import Backbone, to_input
from cellbench.methods.adapters.cellseg1.forward import decode_points, encode
from cellbench.methods.adapters.cellseg1.lora import LoRALinear
from cellbench.methods.adapters.cellseg1.prompts import PointSample, sample_points
from cellbench.methods.checkpoint import EpochCheckpoint, TrainableWeights
from cellbench.methods.epochs import EpochHistory, validation_due

__all__ = ["EpochLoss", "TrainConfig", "make_patches", "point_loss", "train_lora"]

log = logging.getLogger(__name__)

#: Patches per encoder forward/backward in training (see ``benchmarks/cellseg1_vs_reference.py``).
ENCODE_BATCH = 1


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (the ``train`` section of a CellSeg1 config); defaults are the paper's (1-10 images).

    ``encode_batch`` is cellbench's, not the paper's: how many patches share
    one encoder forward and backward (same gradient, more memory; see the
    module docstring).
    """

    epochs: int = 300
    batch_size: int = 4
    grad_accum: int = 8
    lr: float = 3e-3
    pct_start: float = 0.3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    patch_size: int = 256
    patch_overlap: float = 0.5
    min_patches: int = 32
    max_positive: int = 30
    max_negative: int = 15
    top_fraction: float = 0.2
    min_cell_area: int = 100
    val_every: int = 10
    encode_batch: int = ENCODE_BATCH

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "patch_size", "encode_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CellSeg1 train.{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class EpochLoss:
    """Mean losses of one epoch (and the validation loss when it was measured)."""

    epoch: int
    loss: float
    bce: float
    mse: float
    lr: float
    val_loss: float | None = None


def make_patches(
    image: np.ndarray, labels: np.ndarray, *, size: int = 256, overlap: float = 0.5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Square patches covering the image with ``overlap`` (the last one flush with the edge).

    Images smaller than ``size`` are zero-padded to it.

    >>> p = make_patches(np.zeros((300, 200, 3), np.uint8), np.zeros((300, 200), np.int32), size=128)
    >>> len(p), p[0][0].shape
    (12, (128, 128, 3))
    """
    h, w = labels.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        labels = np.pad(labels, ((0, ph), (0, pw)))
        h, w = labels.shape
    stride = max(1, int(round(size * (1 - overlap))))

    def starts(n: int) -> list[int]:
        out = list(range(0, n - size + 1, stride))
        if out[-1] != n - size:
            out.append(n - size)
        return out

    return [
        (image[y : y + size, x : x + size], labels[y : y + size, x : x + size])
        for y in starts(h)
        for x in starts(w)
    ]


def point_loss(
    logits: torch.Tensor, iou: torch.Tensor, labels: np.ndarray, sample: PointSample
) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, MSE) of one image: mask BCE over positive points, IoU-head MSE over all points.

    ``labels`` is the label image in the encoder input frame; targets are
    area-averaged down to the logits' resolution.
    """
    positive = torch.from_numpy(sample.positive)
    mse = F.mse_loss(iou, positive.float().to(iou.device))
    if not sample.positive.any():
        return logits.sum() * 0.0, mse
    targets = np.stack([labels == i for i in sample.label_ids[sample.positive]]).astype(np.float32)
    targets_t = torch.from_numpy(targets)[:, None]
    targets_t = F.interpolate(targets_t, size=logits.shape[-2:], mode="area")[:, 0].to(logits.device)
    bce = F.binary_cross_entropy_with_logits(logits[positive.to(logits.device)], targets_t)
    return bce, mse


def _set_lora_train(model: torch.nn.Module, mode: bool) -> None:
    """Frozen SAM stays in eval mode (no batch-norm updates); only LoRA dropout follows ``mode``."""
    model.eval()
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.dropout.train(mode)


def _batch_loss(
    backbone: Backbone,
    items: Sequence[tuple[np.ndarray, np.ndarray, PointSample]],
    *,
    encoder_grad: bool,
    box_half_side: float | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(BCE, MSE) of each (image, labels, points) item, the images encoded in one batched call."""
    device = next(backbone.model.parameters()).device
    inputs = torch.cat([to_input(image, backbone) for image, _, _ in items]).to(device)
    with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
        embeddings = encode(backbone, inputs)
    losses = []
    for k, (_, labels, sample) in enumerate(items):
        points = torch.from_numpy(sample.points).to(device)
        logits, iou = decode_points(backbone, embeddings[k : k + 1], points, box_half_side=box_half_side)
        losses.append(point_loss(logits, iou, labels, sample))
    return losses


def _chunks(order: np.ndarray, per_step: int, size: int) -> list[tuple[np.ndarray, bool]]:
    """``order`` cut into encoder batches of at most ``size`` that never straddle an optimiser step.

    Each chunk comes with whether an optimiser step follows it.

    >>> [(c.tolist(), s) for c, s in _chunks(np.arange(5), per_step=4, size=3)]
    [([0, 1, 2], False), ([3], True), ([4], True)]
    """
    chunks = []
    for start in range(0, len(order), per_step):
        step = order[start : start + per_step]
        pieces = [step[i : i + size] for i in range(0, len(step), size)]
        chunks += [(piece, i == len(pieces) - 1) for i, piece in enumerate(pieces)]
    return chunks


def train_lora(
    backbone: Backbone,
    train: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    config: TrainConfig = TrainConfig(),
    augment_config: AugmentConfig = AugmentConfig(),
    valid: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    seed: int = 0,
    progress: Callable | None = None,
    box_half_side: float | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: dict | None = None,
) -> tuple[list[EpochLoss], int | None]:
    """Train the LoRA weights already added to ``backbone.model`` on (uint8 RGB image, label image) pairs.

    Every training patch is augmented afresh each epoch with ``augment_config``.

    ``box_half_side`` (input-frame pixels) prompts each sampled point as a box
    centred on it (see :func:`~cellbench.methods.adapters.cellseg1.forward.decode_points`).

    Returns the per-epoch losses and, when ``valid`` is given, the epoch whose
    weights were kept (lowest validation loss, measured every ``val_every``
    epochs and at the end); otherwise the last epoch's weights are kept.

    ``checkpoint_dir``: save the training state there after every epoch and
    continue from the one found there (:mod:`cellbench.methods.checkpoint`;
    ``fingerprint`` must match the saved one).
    """
    if not train:
        raise ValueError("CellSeg1 needs at least one training image")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = backbone.model
    size = backbone.input_size
    patches = [p for img, lab in train for p in make_patches(img, lab, size=config.patch_size, overlap=config.patch_overlap)]
    patches = patches * math.ceil(config.min_patches / len(patches))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("backbone has no trainable parameter: apply a PEFT strategy (LoRA) first")
    encoder_grad = any(p.requires_grad for p in model.image_encoder.parameters())
    per_step = config.batch_size * config.grad_accum
    steps_per_epoch = math.ceil(len(patches) / per_step)
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=config.pct_start
    )
    sampling = {
        "max_positive": config.max_positive,
        "max_negative": config.max_negative,
        "top_fraction": config.top_fraction,
        "min_cell_area": config.min_cell_area,
    }
    val_items = _validation_items(valid, config, size, sampling, seed)
    lora = TrainableWeights(model)
    checkpoint = EpochCheckpoint(checkpoint_dir, fingerprint=fingerprint or {}, generators={"rng": rng},
                                 objects={"lora": lora, "optimizer": optimizer, "scheduler": scheduler})
    history = EpochHistory.resume(checkpoint, row=EpochLoss, better="lower")
    for epoch in checkpoint.epochs(config.epochs, progress, desc="cellseg1 epochs"):
        _set_lora_train(model, True)
        sums = np.zeros(3)
        seen = 0
        optimizer.zero_grad(set_to_none=True)
        chunks = _chunks(rng.permutation(len(patches)), per_step, config.encode_batch)
        for chunk, step_after in progress(chunks, desc="patch batches", leave=False) if progress else chunks:
            items = []
            for index in chunk:
                image, labels = augment(*patches[index], rng, out_size=size, config=augment_config)
                sample = sample_points(labels, rng, **sampling)
                if len(sample):
                    items.append((image, labels, sample))
            if items:
                losses = _batch_loss(backbone, items, encoder_grad=encoder_grad, box_half_side=box_half_side)
                (sum(bce + mse for bce, mse in losses) / per_step).backward()
                for bce, mse in losses:
                    sums += (float(bce.detach() + mse.detach()), float(bce.detach()), float(mse.detach()))
                seen += len(losses)
            if step_after:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        mean = sums / max(seen, 1)
        val_loss = None
        if val_items and validation_due(epoch, config.epochs, config.val_every):
            val_loss = _validation_loss(backbone, val_items, box_half_side)
            history.score(epoch, val_loss, lora.state_dict())
        record = EpochLoss(epoch, float(mean[0]), float(mean[1]), float(mean[2]), float(scheduler.get_last_lr()[0]), val_loss)
        log.info("epoch %d loss %.4f (bce %.4f mse %.4f)", epoch, record.loss, record.bce, record.mse)
        history.add(epoch, record)
    _set_lora_train(model, False)
    return history.rows, history.restore_best(lora.load_state_dict)


def _validation_items(valid, config: TrainConfig, size: int, sampling: dict, seed: int) -> list:
    """Fixed (image, labels, points) of the validation patches, resized to the input without augmentation."""
    rng = np.random.default_rng(seed + 1)
    items = []
    for img, lab in valid:
        for patch, plab in make_patches(img, lab, size=config.patch_size, overlap=config.patch_overlap):
            if size != config.patch_size:
                t = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None].float()
                patch = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0]
                patch = patch.permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
                lt = torch.from_numpy(plab.astype(np.int64))[None, None].float()
                plab = F.interpolate(lt, size=(size, size), mode="nearest")[0, 0].long().numpy()
            sample = sample_points(plab, rng, **sampling)
            if len(sample):
                items.append((patch, plab, sample))
    return items


@torch.no_grad()
def _validation_loss(backbone: Backbone, items: list, box_half_side: float | None) -> float:
    _set_lora_train(backbone.model, False)
    losses = [
        sum(_batch_loss(backbone, [item], encoder_grad=False, box_half_side=box_half_side)[0])
        for item in items
    ]
    _set_lora_train(backbone.model, True)
    return float(torch.stack(losses).mean())


def copy_backbone(backbone: Backbone) -> Backbone:
    """A deep copy (a model can be trained twice from the same frozen weights)."""
    return Backbone(**{**backbone.__dict__, "model": copy.deepcopy(backbone.model)})
