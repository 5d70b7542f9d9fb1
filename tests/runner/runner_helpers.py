"""Helpers of the runner tests: a tiny DSB-layout dataset and experiment files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import yaml


def write_tiny_dsb(root: Path, *, seed: int = 0) -> Path:
    """train/ (3 images) and test/ (2 images) of bright disks on a noisy background, 64 x 64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    for split, n in (("train", 3), ("test", 2)):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for k in range(n):
            labels = np.zeros((64, 64), np.uint16)
            for j, (cy, cx) in enumerate([(14, 14), (14, 46), (46, 14), (46, 46), (30, 30)][: 3 + k]):
                r = rng.integers(5, 8)
                labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = j + 1
            image = (40 + 140 * (labels > 0) + rng.normal(0, 8, labels.shape)).clip(0, 255).astype(np.uint8)
            tifffile.imwrite(root / split / "images" / f"{split}{k}.tif", image)
            tifffile.imwrite(root / split / "masks" / f"{split}{k}.tif", labels)
    return root


def experiment_dict(data: Path, *, log: Path | None = None, sleep_s: float = 0.0, fail: bool = False,
                    coco: bool = False) -> dict:
    """Three method configs x three regimes on the tiny dataset: 9 grid entries."""
    def fake(**config):
        if log is not None:
            config["log"] = str(log)
        return {"method": "fake_methods:ThresholdMethod", "config": config}

    return {
        "name": "tiny",
        "seeds": [0],
        "datasets": {"tiny": {"layout": "dsb", "path": str(data), "train": "train", "test": ["test"]}},
        "methods": {
            "low": fake(threshold=60, sleep_s=sleep_s),
            "high": fake(threshold=200, sleep_s=sleep_s),
            "broken": fake(fail=fail),
        },
        "regimes": {"zero-shot": {"train_images": 0}, "one": {"train_images": 1}, "all": {"train_images": "all"}},
        "evaluation": {"thresholds": [0.5, 0.7, 0.75, 0.9], "ground_truth": ["overlap", "flattened"], "coco": coco},
    }


def experiment_text(data: Path, **kwargs) -> str:
    return yaml.safe_dump(experiment_dict(data, **kwargs), sort_keys=False)
