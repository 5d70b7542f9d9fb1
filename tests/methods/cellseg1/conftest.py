"""Shared fixtures: a tiny random SAM and a small synthetic image of disks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("segment_anything")


def disks(shape=(96, 120), radius=8, step=25, start=12):
    """A label image of disks on a grid, and a noisy image of them."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    k = 1
    for y in range(start, shape[0] - radius, step):
        for x in range(start, shape[1] - radius, step):
            labels[(yy - y) ** 2 + (xx - x) ** 2 < radius**2] = k
            k += 1
    rng = np.random.default_rng(0)
    image = ((labels > 0) * 180 + rng.integers(0, 40, shape)).astype(np.uint16)
    return image, labels


@pytest.fixture
def disk_data():
    return disks()
