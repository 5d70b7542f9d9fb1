"""The training loop the semantic methods share: AdamW (or SGD) on random augmented patches, seeded and deterministic.

As in the two reference scripts (MONAI's 2-D segmentation tutorial, adapted
by the NeurIPS-2022 baseline and by saltfish): AdamW at lr 6e-4, one epoch is
one pass of batches over the training images (``ceil(images / batch)``
steps, each drawing ``batch_size`` random patches), optionally a StepLR
schedule (saltfish: x0.95 every 10 epochs; DeepCell: x0.99 every epoch).
DeepCell's FeatureNet trains with SGD and Nesterov momentum instead
(``optimizer: sgd``). What the network computes and how the loss reads its
output are passed in.

Seed determinism: Python, NumPy and torch are seeded, patches come from one
``numpy.random.Generator`` seeded with the same seed, and on CUDA torch runs
with deterministic algorithms (restored afterwards), so the same samples and
seed give the same weights on the same machine and thread count.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cellbench.methods.base import ProgressFactory
from cellbench.methods.checkpoint import EpochCheckpoint

__all__ = ["TrainSettings", "deterministic", "fit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and schedule (the NeurIPS-2022 report's: AdamW, lr 6e-4, batch 8, 256 px patches).

    Attributes:
        epochs: passes over the training images.
        batch_size: patches per step.
        patch_size: side of the square training patches, and of the sliding
            window at prediction (the network's input size).
        lr, weight_decay: AdamW settings (torch's default weight decay 0.01,
            as the reference scripts leave it).
        steps_per_epoch: None: ``ceil(images / batch_size)``; a number fixes
            it (one image still gives several steps per epoch).
        lr_step, lr_gamma: StepLR: multiply the learning rate by ``lr_gamma``
            every ``lr_step`` epochs; 0 keeps it constant.
        optimizer: ``adamw`` (the references'), or ``sgd``: SGD with Nesterov
            momentum ``momentum`` and L2 weight decay (DeepCell's FeatureNet).
    """

    epochs: int = 100
    batch_size: int = 8
    patch_size: int = 256
    lr: float = 6e-4
    weight_decay: float = 0.01
    steps_per_epoch: int | None = None
    lr_step: int = 0
    lr_gamma: float = 0.95
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patch_size < 16:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, patch_size >= 16; got {self.epochs}, "
                             f"{self.batch_size}, {self.patch_size}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be None or >= 1, got {self.steps_per_epoch}")
        if self.lr <= 0 or self.lr_step < 0:
            raise ValueError(f"need lr > 0 and lr_step >= 0, got {self.lr}, {self.lr_step}")
        if self.optimizer not in ("adamw", "sgd") or not 0 <= self.momentum < 1:
            raise ValueError(f"optimizer must be 'adamw' or 'sgd' and 0 <= momentum < 1, got {self.optimizer!r}, "
                             f"{self.momentum}")

    def steps(self, n_images: int) -> int:
        """Steps per epoch for ``n_images`` training images."""
        return self.steps_per_epoch or max(1, math.ceil(n_images / self.batch_size))


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[np.random.Generator]:
    """Seed Python, NumPy and torch; on CUDA also switch to deterministic algorithms; yield a seeded generator.

    The CPU kernels these networks use (convolutions, norms, pooling,
    AdamW) are deterministic for a given thread count, and on the CPU
    ``torch.use_deterministic_algorithms`` only costs an import of
    ``torch._inductor`` (seconds), so it is switched on (and restored) only
    when CUDA is in use.
    """
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        was = torch.are_deterministic_algorithms_enabled()
        was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield np.random.default_rng(seed)
    finally:
        if cuda:
            torch.use_deterministic_algorithms(was, warn_only=was_warn)


def fit(
    network: Any,
    loss_fn: Callable[[Any, dict[str, Any]], Any],
    draw_batch: Callable[[np.random.Generator], dict[str, np.ndarray]],
    settings: TrainSettings,
    *,
    n_images: int,
    rng: np.random.Generator,
    progress: ProgressFactory | None = None,
    desc: str = "training",
    checkpoint_dir: Path | None = None,
    fingerprint: dict | None = None,
) -> list[float]:
    """Train ``network`` in place; returns the mean loss of every epoch.

    ``draw_batch(rng)`` returns numpy arrays by name (``image`` first);
    ``loss_fn(output, tensors)`` gets the network's output for the image
    and the same arrays as tensors on the network's device. With
    ``checkpoint_dir`` the state is saved there after every epoch, and a
    state found there is continued (:mod:`cellbench.methods.checkpoint`).
    """
    import torch

    device = next(network.parameters()).device
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(network.parameters(), lr=settings.lr, momentum=settings.momentum,
                                    nesterov=settings.momentum > 0, weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.AdamW(network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step, gamma=settings.lr_gamma)
                 if settings.lr_step else None)
    steps = settings.steps(n_images)
    objects = {"model": network, "optimizer": optimizer, **({"scheduler": scheduler} if scheduler else {})}
    checkpoint = EpochCheckpoint(checkpoint_dir, fingerprint=fingerprint or {}, objects=objects,
                                 generators={"rng": rng})
    losses = [float(v) for v in checkpoint.resume().history]
    network.train()
    for epoch in checkpoint.epochs(settings.epochs, progress, desc=desc, unit="epoch"):
        total = 0.0
        for _ in range(steps):
            batch = {k: torch.from_numpy(v).to(device) for k, v in draw_batch(rng).items()}
            optimizer.zero_grad()
            loss = loss_fn(network(batch["image"]), batch)
            loss.backward()
            optimizer.step()
            total += float(loss.item())
        if scheduler is not None:
            scheduler.step()
        losses.append(total / steps)
        log.info("epoch %d loss %.4f", epoch, losses[-1])
        checkpoint.save(epoch + 1, history=losses)
    network.eval()
    return losses
