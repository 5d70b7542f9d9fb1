"""MEDIAR's training loop: augmented crops, Cellpose flows as targets, BCE + MSE, AdamW with a cosine schedule.

Loss per batch (MEDIAR's ``mediar_criterion``): binary cross-entropy of the
cell-probability logits against "pixel is in a cell", plus half the mean
squared error between the flow outputs and 5 x the Cellpose flows.

An epoch draws ``crops_per_epoch`` training images (every image once per
pass, in a random order, passes repeated until enough are drawn), one
augmented crop each, in batches of ``batch_size``. The learning rate follows
``CosineAnnealingLR(T_max, eta_min)`` stepped once per epoch, as in MEDIAR.
With validation images the weights of the epoch with the best F1 at IoU 0.5
are kept (MEDIAR keeps its best validation F1 the same way, starting from a
floor of 0.1, below which it keeps the last weights).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.methods.base import EpochRecord, ProgressFactory
from cellbench.methods.checkpoint import EpochCheckpoint
from cellbench.methods.epochs import EpochHistory, validation_due
from cellbench.methods.adapters.mediar.augment import AugmentConfig, augment, flow_targets

__all__ = ["Schedule", "fit"]

log = logging.getLogger(__name__)

_BEST_FLOOR = 0.1  # MEDIAR's initial best F1: below it the last weights are kept


@dataclass(frozen=True)
class Schedule:
    """The optimisation settings :func:`fit` needs (taken from the method's config)."""

    epochs: int
    batch_size: int
    crops_per_epoch: int
    crop: int
    learning_rate: float
    weight_decay: float
    t_max: int
    eta_min: float
    valid_every: int
    augment: AugmentConfig


def _draws(n_images: int, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` image indices: shuffled passes over all images, repeated as needed."""
    order: list[int] = []
    while len(order) < count:
        order += [int(i) for i in rng.permutation(n_images)]
    return order[:count]


def _batch(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], picks: Sequence[int], schedule: Schedule,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, cells, flows = [], [], []
    for i in picks:
        x, lab = augment(images[i], labels[i], crop=schedule.crop, config=schedule.augment, rng=rng)
        xs.append(x)
        cells.append((lab > 0).astype(np.float32))
        flows.append(flow_targets(lab))
    return np.stack(xs), np.stack(cells), np.stack(flows)


def fit(
    net: Any,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    schedule: Schedule,
    *,
    rng: np.random.Generator,
    device: Any,
    validate: Callable[[], float] | None = None,
    progress: ProgressFactory | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: dict | None = None,
) -> tuple[list[EpochRecord], int | None, float]:
    """Train ``net`` in place on C x H x W images and H x W labels.

    Returns the epoch records, the epoch whose weights ``net`` ends with, and
    the training wall time. ``validate`` (called every ``valid_every`` epochs
    and after the last) gives the F1 at IoU 0.5 on the validation images.
    ``checkpoint_dir``: save the state there after every epoch and continue
    a state found there (:mod:`cellbench.methods.checkpoint`).
    """
    import torch
    from torch import nn

    optimiser = torch.optim.AdamW(net.parameters(), lr=schedule.learning_rate, weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=schedule.t_max, eta_min=schedule.eta_min)
    bce, mse = nn.BCEWithLogitsLoss(), nn.MSELoss()
    checkpoint = EpochCheckpoint(checkpoint_dir, fingerprint=fingerprint or {}, generators={"rng": rng},
                                 objects={"model": net, "optimizer": optimiser, "scheduler": scheduler})
    history = EpochHistory.resume(checkpoint, floor=_BEST_FLOOR)
    for epoch in checkpoint.epochs(schedule.epochs, progress, desc="mediar training", unit="epoch"):
        net.train()
        picks = _draws(len(images), schedule.crops_per_epoch, rng)
        batches = [picks[k:k + schedule.batch_size] for k in range(0, len(picks), schedule.batch_size)]
        steps = progress(batches, desc=f"epoch {epoch}", unit="batch", leave=False) if progress else batches
        losses = []
        lr = optimiser.param_groups[0]["lr"]
        for batch in steps:
            x, cells, flows = (torch.from_numpy(a).to(device) for a in _batch(images, labels, batch, schedule, rng))
            out = net(x)
            loss = bce(out[:, 2], cells) + 0.5 * mse(out[:, :2], 5.0 * flows)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        scheduler.step()
        score = None
        if validate is not None and validation_due(epoch, schedule.epochs, schedule.valid_every):
            score = float(validate())
            history.score(epoch, score, net.state_dict())
        record = EpochRecord(epoch=epoch, loss=float(np.mean(losses)), val_score=score, extra={"lr": lr})
        log.info("epoch %d loss %.4f", epoch, record.loss)
        history.add(epoch, record)
    wall = checkpoint.wall_s
    kept = history.restore_best(net.load_state_dict)
    return history.rows, len(history.rows) - 1 if kept is None else kept, wall
