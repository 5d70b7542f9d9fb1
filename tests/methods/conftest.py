"""Tiny synthetic images for method tests: bright blobs on a noisy dark background."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import ellipse

from cellbench.data.dataset import Sample
from cellbench.instances import InstanceSet

# crafted_model_dirs.py (the security tests' model directories) is imported by name from this folder.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


def blob_sample(seed: int, *, shape=(96, 96), n=9, name=None) -> Sample:
    """An image with ``n`` non-touching ellipses (radius 5-8 px) and its label image."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    placed = 0
    for _ in range(500):
        if placed == n:
            break
        r, c = rng.integers(9, shape[0] - 9), rng.integers(9, shape[1] - 9)
        rr, cc = ellipse(r, c, rng.integers(5, 8), rng.integers(5, 8), shape=shape, rotation=rng.uniform(0, np.pi))
        grown = np.zeros(shape, bool)
        grown[max(r - 10, 0):r + 11, max(c - 10, 0):c + 11] = True
        if labels[grown].any():
            continue
        placed += 1
        labels[rr, cc] = placed
    image = 20 + 150 * (labels > 0) + rng.normal(0, 8, shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return Sample(name or f"blobs{seed}", InstanceSet.from_label_image(labels), array=image)


@pytest.fixture(scope="session")
def blobs() -> dict[str, list[Sample]]:
    return {"train": [blob_sample(1), blob_sample(2)], "valid": [blob_sample(3)], "test": [blob_sample(4)]}
