"""All-or-nothing export: write_dataset failing mid-way leaves nothing, or the previous output."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import cellbench.data.export as export
from cellbench.data import read_dataset
from cellbench.data.export import write_dataset
from cellbench.errors import DataError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def dsb(tmp_path):
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(3):
        lab = np.zeros((6, 7), np.uint16)
        lab[k : k + 2, 1:4] = 1
        lab[4:, 5:] = 2
        tifffile.imwrite(root / "images" / f"im{k}.tif", np.zeros((6, 7), np.uint8))
        tifffile.imwrite(root / "masks" / f"im{k}.tif", lab)
    return read_dataset(root, "dsb")


@pytest.mark.parametrize("fmt", ["labels", "roi", "geojson", "coco"])
def test_write_dataset_failing_on_second_sample_writes_nothing(dsb, tmp_path, monkeypatch, fmt):
    real = export._WRITERS[fmt]
    calls = []

    def failing(tmp, rel, sample, instances, flat):
        calls.append(sample.name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(tmp, rel, sample, instances, flat)

    monkeypatch.setitem(export._WRITERS, fmt, failing)
    out = tmp_path / "parent" / "out"
    with pytest.raises(DataError, match="disk full"):  # file-system errors come out as DataError
        write_dataset(dsb, out, fmt)
    assert calls == ["im0", "im1"]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no hidden .partial folder, nor the parent it made


def test_write_dataset_failure_keeps_previous_output(dsb, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = write_dataset(dsb, out, "labels")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def failing(*args):
        raise RuntimeError("broken writer")

    monkeypatch.setitem(export._WRITERS, "labels", failing)
    with pytest.raises(RuntimeError):
        write_dataset(dsb, out, "labels", overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert len(first["files"]) == 3
    assert _leftovers(tmp_path) == []


def test_write_dataset_failure_in_final_coco_step(dsb, tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise ValueError("cannot encode")

    monkeypatch.setattr(export, "to_coco", failing)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="cannot encode"):
        write_dataset(dsb, out, "coco")
    assert not out.exists()
    assert _leftovers(tmp_path) == []
