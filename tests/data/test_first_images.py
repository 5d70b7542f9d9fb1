"""The data option ``first_images``: every layout keeps the first N images of a split in name order."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellbench.data import read_dataset
from cellbench.errors import DataError


@pytest.fixture
def folder(tmp_path):
    for name in ("c", "a", "d", "b"):
        labels = np.zeros((16, 16), np.uint16)
        labels[4:10, 4:10] = 1
        for sub, arr in (("images", (labels * 100).astype(np.uint8)), ("masks", labels)):
            (tmp_path / "test" / sub).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(tmp_path / "test" / sub / f"{name}.tif", arr)
    return tmp_path


def test_first_images_in_name_order(folder):
    assert [s.name for s in read_dataset(folder, "dsb", split="test", first_images=2)] == ["a", "b"]
    assert len(read_dataset(folder, "dsb", split="test", first_images=10)) == 4
    assert len(read_dataset(folder, "dsb", split="test")) == 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_first_images_must_be_a_positive_integer(folder, bad):
    with pytest.raises(DataError, match="first_images must be an integer >= 1"):
        read_dataset(folder, "dsb", split="test", first_images=bad)
