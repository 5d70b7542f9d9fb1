"""A test-only method that classifies: threshold + components, class by size (runner tests of classes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fake_methods import ThresholdMethod


class SizeClassMethod(ThresholdMethod):
    """ThresholdMethod whose instances get class 0 below a learned area and class 1 above it."""

    name = "test-size-class"
    supports_classes = True

    def __init__(self, config=None):
        super().__init__(config)
        self.classes, self.split = ("cell",), 0.0

    def train(self, train, valid=None, *, seed=0, progress=None):
        history = super().train(train, valid, seed=seed, progress=progress)
        self.classes = train[0].instances.classes
        areas = [[i.area for s in train for i in s.instances if i.class_id == k] for k in range(len(self.classes))]
        self.split = float(np.mean([np.mean(a) for a in areas if a]))
        return history

    def predict(self, image):
        found = super().predict(image)
        kept = tuple(i.replace(class_id=int(len(self.classes) > 1 and i.area > self.split)) for i in found)
        return found.replace(instances=kept, classes=self.classes)

    def save_weights(self, folder):
        super().save_weights(folder)
        (Path(folder) / "classes.json").write_text(json.dumps({"classes": self.classes, "split": self.split}))

    def load_weights(self, folder):
        super().load_weights(folder)
        d = json.loads((Path(folder) / "classes.json").read_text())
        self.classes, self.split = tuple(d["classes"]), d["split"]
