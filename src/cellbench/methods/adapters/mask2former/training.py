"""Mask2Former's training loop: random crops, Hugging Face's matched losses, Mask2Former's AdamW recipe.

Each step draws ``batch_size`` random crops (every instance in the window a
target, overlaps kept: :mod:`.targets`), runs the network with every decoder
layer's predictions, and sums Hugging Face's weighted loss terms (mask BCE,
dice and class cross-entropy, after Hungarian matching, for each layer). The
optimiser is Mask2Former's: AdamW, the backbone at ``backbone_lr_factor`` of
the rate, no weight decay on norms, embeddings and Swin's position tables,
the whole model's gradient norm clipped to ``clip_grad``; the rate warms up
linearly for ``warmup_iters`` steps and is divided by 10 at each of
``lr_drops`` (fractions of all steps). Every ``val_every`` epochs (and after
the last) ``validate`` scores the model; with ``keep_best`` the best epoch's
weights are the ones left. With a checkpoint folder each epoch is saved and a
saved training continues where it stopped
(:class:`~cellbench.methods.checkpoint.EpochCheckpoint`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.methods.base import EpochRecord, ProgressFactory, TrainHistory
from cellbench.methods.checkpoint import EpochCheckpoint
from cellbench.methods.epochs import EpochHistory, validation_due
from cellbench.methods.adapters.detection.targets import random_crop
from cellbench.methods.adapters.mask2former.config import Mask2FormerConfig
from cellbench.methods.adapters.mask2former.network import BACKBONE_PREFIX, forward, losses
from cellbench.methods.adapters.mask2former.targets import batch_targets

__all__ = ["crops_per_epoch", "lr_factor", "param_groups", "train_mask2former"]

log = logging.getLogger(__name__)

#: Parameters without weight decay besides norms and embeddings (Mask2Former's Swin recipe).
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "level_embed")
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Embedding)
#: The loss terms reported per epoch, summed over the decoder layers.
TERMS = ("loss_mask", "loss_dice", "loss_cross_entropy")


def crops_per_epoch(images: Sequence[np.ndarray], cfg: Mask2FormerConfig) -> int:
    """``cfg.crops_per_epoch``, or as many crops as tile the images once (at least one batch)."""
    return cfg.crops_per_epoch or max(cfg.batch_size, sum(
        math.ceil(im.shape[0] / cfg.crop_size) * math.ceil(im.shape[1] / cfg.crop_size) for im in images))


def param_groups(model: nn.Module, cfg: Mask2FormerConfig) -> list[dict]:
    """AdamW's parameter groups: (backbone or not) x (weight decay or not), empty ones left out."""
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, NORMS):
            no_decay.update(f"{module_name}.{p}" for p, _ in module.named_parameters(recurse=False))
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = name not in no_decay and not any(n in name for n in NO_DECAY_NAMES)
        groups.setdefault((name.startswith(BACKBONE_PREFIX), decay), []).append(p)
    return [{"params": params, "lr": cfg.lr * (cfg.backbone_lr_factor if backbone else 1.0),
             "weight_decay": cfg.weight_decay if decay else 0.0}
            for (backbone, decay), params in sorted(groups.items())]


def lr_factor(step: int, *, total: int, warmup: int, drops: Sequence[float]) -> float:
    """The rate's factor at ``step`` of ``total``: linear warm-up from 0.001 over ``warmup`` steps (at most
    half of them), times 0.1 for each fraction of ``drops`` the step has passed.

    >>> [round(lr_factor(s, total=100, warmup=10, drops=(0.889, 0.963)), 4) for s in (0, 5, 50, 89, 97)]
    [0.001, 0.5005, 1.0, 0.1, 0.01]
    """
    warm = min(warmup, total // 2)
    factor = 0.001 + 0.999 * step / warm if step < warm else 1.0
    return factor * 0.1 ** sum(step >= round(f * total) for f in drops)


def _term(key: str) -> str:
    """A loss key without its decoder layer: ``loss_dice_3`` -> ``loss_dice``."""
    return re.sub(r"_\d+$", "", key)


def train_mask2former(
    model: nn.Module,
    images: Sequence[np.ndarray],
    instances: Sequence[InstanceSet],
    cfg: Mask2FormerConfig,
    *,
    rng: np.random.Generator,
    validate: Callable[[], float] | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: dict | None = None,
    progress: ProgressFactory | None = None,
) -> TrainHistory:
    """Train ``model`` on random crops of ``images`` (H x W x 3 float, preprocessed) and their ``instances``.

    ``rng`` draws the crops; the loss's point sampling draws from torch's
    generator (seed torch before building the model for a reproducible
    training). ``info`` of the result holds the steps and crops per epoch.
    """
    steps = max(1, math.ceil(crops_per_epoch(images, cfg) / cfg.batch_size))
    total = steps * cfg.epochs
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, total=total, warmup=cfg.warmup_iters, drops=cfg.lr_drops))
    checkpoint = EpochCheckpoint(checkpoint_dir, fingerprint=fingerprint or {}, generators={"rng": rng},
                                 objects={"model": model, "optimizer": opt, "scheduler": sched})
    history = EpochHistory.resume(checkpoint)
    for epoch in checkpoint.epochs(cfg.epochs, progress, desc="mask2former training", unit="epoch"):
        model.train()
        sums: dict[str, float] = {}
        for _ in range(steps):
            crops = [random_crop(images[k], instances[k], cfg.crop_size, rng, augment=cfg.augment,
                                 min_area=cfg.min_area)
                     for k in rng.integers(len(images), size=cfg.batch_size)]
            batch = batch_targets(crops)
            output = forward(model, batch.images, scale=cfg.scale, auxiliary=True)
            terms = losses(model, output, batch.masks, batch.classes)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise DataError(f"mask2former: training loss is {float(loss)} at epoch {epoch}; lower lr")
            opt.zero_grad()
            loss.backward()
            if cfg.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            sched.step()
            for key, value in terms.items():
                sums[_term(key)] = sums.get(_term(key), 0.0) + float(value.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        val = None
        if validate is not None and validation_due(epoch, cfg.epochs, cfg.val_every):
            val = validate()
            history.score(epoch, val, model.state_dict())
        means = {k: v / steps for k, v in sums.items()}
        record = EpochRecord(epoch=epoch, loss=means.pop("loss"), val_score=val,
                             extra={"lr": float(sched.get_last_lr()[0]), **means})  # the heads' rate
        log.info("epoch %d loss %.4f", epoch, record.loss)
        history.add(epoch, record)
    kept = history.restore_best(model.load_state_dict) if cfg.keep_best else None
    return TrainHistory(
        epochs=tuple(history.rows), val_metric="f1@0.5" if validate is not None else None,
        best_epoch=len(history.rows) - 1 if kept is None else kept, wall_s=checkpoint.wall_s,
        info={"steps_per_epoch": steps, "crops_per_epoch": steps * cfg.batch_size},
    )
