"""All-or-nothing output: staged_dir, atomic_write_bytes, and write_dataset failing mid-way."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

import cellbench.data.export as export
from cellbench.data import read_dataset
from cellbench.data.export import atomic_write_bytes, staged_dir, write_dataset
from cellbench.errors import DataError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_staged_dir_success(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as tmp:
        assert tmp != out
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".out.partial-")
        (tmp / "f.txt").write_text("x")
        assert not out.exists()
    assert (out / "f.txt").read_text() == "x"
    assert _leftovers(tmp_path) == []


def test_staged_dir_creates_missing_parents(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with staged_dir(out) as tmp:
        (tmp / "f").write_text("1")
    assert (out / "f").is_file()


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_staged_dir_failure_leaves_nothing(tmp_path, exc):
    out = tmp_path / "out"
    with pytest.raises(exc):
        with staged_dir(out) as tmp:
            (tmp / "f.txt").write_text("x")
            raise exc("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_staged_dir_failure_keeps_old_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert _leftovers(tmp_path) == []


def test_staged_dir_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(DataError, match="not empty"):
        with staged_dir(out):
            pass
    with staged_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert _leftovers(tmp_path) == []


def test_atomic_write_bytes(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["f.bin"]


def test_atomic_write_bytes_failure_keeps_old_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


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
    with pytest.raises(OSError, match="disk full"):
        write_dataset(dsb, out, fmt)
    assert calls == ["im0", "im1"]
    assert not out.exists()
    assert list((tmp_path / "parent").iterdir()) == []  # no hidden .partial folder either


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
