"""Test-only methods for the runner: threshold + connected components, with hooks.

Importable as ``fake_methods:ThresholdMethod`` once this folder is on the path
(the tests put it there, also for subprocesses and Ray workers).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cellbench.instances import InstanceSet
from cellbench.methods import EpochRecord, Method, TrainHistory


@dataclass(frozen=True)
class ThresholdConfig:
    threshold: float = 100.0  # grey level when not trained
    sleep_s: float = 0.0  # per train call
    log: str | None = None  # append one line per train / predict call here
    fail: bool = False  # raise in predict
    min_area: int = 0  # drop components smaller than this


class ThresholdMethod(Method):
    """Foreground = image > level; instances = connected components. Training
    sets the level halfway between the mean foreground and background grey."""

    name = "test-threshold"
    Config = ThresholdConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.level = float(self.config.threshold)
        self.tag = "zero-shot"

    def _log(self, line: str) -> None:
        if self.config.log:
            with open(self.config.log, "a") as fh:
                fh.write(line + "\n")

    def train(self, train, valid=None, *, seed=0, progress=None):
        self._log(f"train-start {self.config.threshold} {len(train)}")
        time.sleep(self.config.sleep_s)
        fg, bg = [], []
        for s in train:
            img = s.load_image().astype(float)
            mask = s.instances.coverage() > 0
            fg.append(img[mask].mean())
            bg.append(img[~mask].mean())
        self.level = (float(np.mean(fg)) + float(np.mean(bg))) / 2
        self.tag = f"trained-{len(train)}"
        self._log(f"train-end {self.config.threshold} {self.tag}")
        return TrainHistory(
            epochs=(EpochRecord(0, loss=1.0, val_score=0.5), EpochRecord(1, loss=0.25, val_score=0.75)),
            val_metric="dice",
            best_epoch=1,
            info={"batch_size": 2, "lr": 0.001, "input_size": "full", "optimizer": "none", "epochs": 2},
        )

    def predict(self, image):
        if self.config.fail:
            raise RuntimeError("this method always fails")
        self._log(f"predict {self.config.threshold} {self.tag} {int(image.sum())}")
        labels, _ = ndimage.label(np.asarray(image) > self.level)
        if self.config.min_area:
            sizes = np.bincount(labels.ravel())
            labels[sizes[labels] < self.config.min_area] = 0
        out = InstanceSet.from_label_image(labels)
        return out.replace(instances=tuple(i.replace(score=1.0) for i in out))

    def save_weights(self, folder):
        (Path(folder) / "level.json").write_text(json.dumps({"level": self.level, "tag": self.tag}))

    def load_weights(self, folder):
        d = json.loads((Path(folder) / "level.json").read_text())
        self.level, self.tag = d["level"], d["tag"]


class UnseededThresholdMethod(ThresholdMethod):
    """The same, declared free of random numbers (``Method.seeded``), as watershed is."""

    seeded = False


class NeedsAbsentPackage(ThresholdMethod):
    """A method whose requirement is not installed anywhere (for ``if_installed``)."""

    name = "needs-absent"
    requires = ("no_such_package_cb",)
    extra = "absent"
