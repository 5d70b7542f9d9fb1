"""Fixtures shared across the test packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile


@pytest.fixture
def three_disks(tmp_path) -> Path:
    """``tmp_path / "data"``: a dataset folder (``images/a.tif``, ``masks/a.tif``) of three disks of radius 6
    on a noisy 48 x 48 uint8 background, small enough for a training command to finish in seconds."""
    yy, xx = np.mgrid[:48, :48]
    labels = np.zeros((48, 48), np.uint16)
    for j, (cy, cx) in enumerate([(12, 12), (12, 36), (36, 24)]):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = j + 1
    image = (30 + 150 * (labels > 0) + np.random.default_rng(0).normal(0, 5, labels.shape)).astype(np.uint8)
    root = tmp_path / "data"
    for sub, arr in (("images", image), ("masks", labels)):
        (root / sub).mkdir(parents=True)
        tifffile.imwrite(root / sub / "a.tif", arr)
    return root
