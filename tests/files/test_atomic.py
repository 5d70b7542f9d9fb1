"""All-or-nothing outputs: staged_dir and atomic_write_bytes."""

from __future__ import annotations

import os

import pytest

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, staged_dir


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
