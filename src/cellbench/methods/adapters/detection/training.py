"""The detectors' one training loop: random crops, summed losses, warm-up and cosine decay, the best epoch kept.

:func:`train_detector` trains any torchvision-style detector, a module that in
training mode takes a list of images and a list of targets and returns a dict
of losses (Mask R-CNN and the heads that follow it). Each step draws
``batch_size`` random crops (:func:`~.targets.random_crop`; every instance in
the window a target, overlaps kept), sums the losses with equal weights and
takes an SGD or AdamW step (gradients clipped to ``max_grad_norm`` where the
config has one: SOLOv2's); the learning rate warms up linearly for
``warmup_iters`` steps and then decays on a cosine to 0. Every ``val_every``
epochs (and after the last) ``validate`` scores the model; with ``keep_best``
the best epoch's weights are the ones left in the model. With a checkpoint
folder each epoch is saved and a saved training continues where it stopped
(:class:`~cellbench.methods.checkpoint.EpochCheckpoint`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.methods.base import EpochRecord, ProgressFactory, TrainHistory
from cellbench.methods.checkpoint import EpochCheckpoint
from cellbench.methods.epochs import EpochHistory, validation_due
from cellbench.methods.adapters.detection.inference import set_input_size
from cellbench.methods.adapters.detection.targets import batch_tensors, random_crop

__all__ = ["LoopConfig", "crops_per_epoch", "train_detector"]

log = logging.getLogger(__name__)


class LoopConfig(Protocol):
    """The settings the loop reads: fields of a detector method's config (see ``MaskRCNNConfig``); a config may
    also have ``max_grad_norm`` (a float, or None: not clipped), as ``SOLOv2Config`` does."""

    epochs: int
    crops_per_epoch: int | None
    batch_size: int
    patch_size: int
    scale: float
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    warmup_iters: int
    augment: bool
    min_area: int
    val_every: int
    keep_best: bool


def crops_per_epoch(images: Sequence[np.ndarray], cfg: LoopConfig) -> int:
    """``cfg.crops_per_epoch``, or as many crops as tile the images once (at least one batch)."""
    return cfg.crops_per_epoch or max(cfg.batch_size, sum(
        math.ceil(im.shape[0] / cfg.patch_size) * math.ceil(im.shape[1] / cfg.patch_size) for im in images))


def _optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _schedule(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0.1 % over ``warmup`` steps (at most half of them), then a cosine decay to 0."""
    warm = max(1, min(warmup, total // 2))

    def factor(step: int) -> float:
        if step < warm:
            return 0.001 + 0.999 * step / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_detector(
    model: nn.Module,
    images: Sequence[np.ndarray],
    instances: Sequence[InstanceSet],
    cfg: LoopConfig,
    *,
    rng: np.random.Generator,
    name: str,
    validate: Callable[[], float] | None = None,
    val_metric: str = "f1@0.5",
    checkpoint_dir: Path | None = None,
    fingerprint: dict | None = None,
    progress: ProgressFactory | None = None,
) -> TrainHistory:
    """Train ``model`` on random crops of ``images`` (H x W x 3 float, preprocessed) and their ``instances``.

    ``name`` labels the progress bar and the errors; ``rng`` draws the crops
    (seed torch before building the model for a reproducible training).
    ``info`` of the result holds the steps and crops per epoch.
    """
    per_epoch = crops_per_epoch(images, cfg)
    steps = max(1, math.ceil(per_epoch / cfg.batch_size))
    opt = _optimizer(model, cfg)
    max_grad_norm = getattr(cfg, "max_grad_norm", None)
    sched = _schedule(opt, cfg.warmup_iters, steps * cfg.epochs)
    checkpoint = EpochCheckpoint(checkpoint_dir, fingerprint=fingerprint or {}, generators={"rng": rng},
                                 objects={"model": model, "optimizer": opt, "scheduler": sched})
    history = EpochHistory.resume(checkpoint)
    for epoch in checkpoint.epochs(cfg.epochs, progress, desc=f"{name} training", unit="epoch"):
        model.train()
        set_input_size(model, cfg.patch_size, cfg.patch_size, cfg.scale)
        sums: dict[str, float] = {}
        for _ in range(steps):
            crops = [random_crop(images[k], instances[k], cfg.patch_size, rng, augment=cfg.augment,
                                 min_area=cfg.min_area)
                     for k in rng.integers(len(images), size=cfg.batch_size)]
            losses = model(*batch_tensors(crops))
            loss: Any = sum(losses.values())  # equally weighted
            if not torch.isfinite(loss):
                raise DataError(f"{name}: training loss is {float(loss)} at epoch {epoch}; lower lr")
            opt.zero_grad()
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
            opt.step()
            sched.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        val = None
        if validate is not None and validation_due(epoch, cfg.epochs, cfg.val_every):
            val = validate()
            history.score(epoch, val, model.state_dict())
        means = {k: v / steps for k, v in sums.items()}
        record = EpochRecord(epoch=epoch, loss=means.pop("loss"), val_score=val,
                             extra={"lr": float(sched.get_last_lr()[0]), **means})
        log.info("epoch %d loss %.4f", epoch, record.loss)
        history.add(epoch, record)
    kept = history.restore_best(model.load_state_dict) if cfg.keep_best else None
    return TrainHistory(
        epochs=tuple(history.rows), val_metric=val_metric if validate is not None else None,
        best_epoch=len(history.rows) - 1 if kept is None else kept, wall_s=checkpoint.wall_s,
        info={"steps_per_epoch": steps, "crops_per_epoch": steps * cfg.batch_size},
    )
