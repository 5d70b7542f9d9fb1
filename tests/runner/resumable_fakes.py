"""A test-only resumable method: a threshold learned over epochs, its state kept per epoch in ``checkpoint_dir``.

Importable as ``resumable_fakes:EpochThresholdMethod`` once this folder is on the path. It imports no torch:
its checkpoint is a JSON file under the name cellbench's checkpoints use (``train-state.pt``), written after
every epoch. With ``stop_file`` existing, training raises at the start of epoch ``stop_at`` (a kill between
two epochs: the checkpoint of the epochs before stays).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fake_methods import ThresholdMethod

from cellbench.files import atomic_write_bytes
from cellbench.methods import EpochRecord, TrainHistory
from cellbench.methods.checkpoint import CHECKPOINT_FILE


class Killed(Exception):
    """Raised where the test stops a training, as a kill between two epochs would."""


@dataclass(frozen=True)
class EpochThresholdConfig:
    threshold: float = 100.0
    epochs: int = 4
    stop_at: int = 2
    stop_file: str | None = None
    log: str | None = None  # one line per epoch trained
    fail: bool = False
    min_area: int = 0


class EpochThresholdMethod(ThresholdMethod):
    """Each epoch moves the level halfway to the foreground / background midpoint of the training images."""

    name = "test-epoch-threshold"
    Config = EpochThresholdConfig
    resumable = True

    def train(self, train, valid=None, *, seed=0, progress=None, checkpoint_dir=None):
        fg = [s.load_image()[s.instances.coverage() > 0].mean() for s in train]
        bg = [s.load_image()[s.instances.coverage() == 0].mean() for s in train]
        target = (sum(fg) / len(fg) + sum(bg) / len(bg)) / 2
        state = {"epoch": 0, "level": float(self.config.threshold), "losses": []}
        path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
        if path is not None and path.is_file():
            state = json.loads(path.read_text())
        for epoch in range(state["epoch"], self.config.epochs):
            if epoch == self.config.stop_at and self.config.stop_file and Path(self.config.stop_file).exists():
                raise Killed(f"stopped before epoch {epoch}")
            if self.config.log:
                with open(self.config.log, "a") as fh:
                    fh.write(f"epoch {epoch}\n")
            level = (state["level"] + target) / 2
            state = {"epoch": epoch + 1, "level": level, "losses": [*state["losses"], abs(level - target)]}
            if path is not None:
                atomic_write_bytes(path, json.dumps(state).encode())
        self.level, self.tag = state["level"], f"trained-{len(train)}"
        return TrainHistory(epochs=tuple(EpochRecord(k, loss=v) for k, v in enumerate(state["losses"])))
