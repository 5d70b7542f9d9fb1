"""All-or-nothing outputs: staged_dir and atomic_write_bytes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

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


# ---- file-system errors, and what a killed writer leaves behind

STAGE_AND_WAIT = """
import sys, time
from pathlib import Path
from cellbench.files import staged_dir
with staged_dir(sys.argv[1], overwrite=True) as tmp:
    (tmp / "half.txt").write_text("half")
    print(tmp, flush=True)
    time.sleep(60)
"""


def _stager(out) -> tuple[subprocess.Popen, Path]:
    """Another process in the middle of staging ``out``; returns it and its partial folder."""
    proc = subprocess.Popen([sys.executable, "-c", STAGE_AND_WAIT, str(out)], stdout=subprocess.PIPE, text=True)
    partial = Path(proc.stdout.readline().strip())
    proc.stdout.close()
    return proc, partial


def test_an_output_under_a_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder") as err:
        with staged_dir(tmp_path / "file" / "sub" / "out"):
            pass
    assert err.value.path == str(tmp_path / "file")
    with pytest.raises(DataError, match="not a folder"):
        atomic_write_bytes(tmp_path / "file" / "f.bin", b"1")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_file_system_errors_name_the_final_output(tmp_path):
    out = tmp_path / "made" / "out"
    with pytest.raises(DataError, match="cannot write the output \\(No space left on device\\)") as err:
        with staged_dir(out) as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "labels" / "a.tif"))
    assert err.value.path == str(out / "labels" / "a.tif")
    assert os.listdir(tmp_path) == []  # not even the parent folder it made


def test_a_killed_writer_leaves_only_a_partial_folder_that_the_next_write_removes(tmp_path):
    out = tmp_path / "out"
    proc, partial = _stager(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists() and (partial / "half.txt").is_file()
    with staged_dir(out) as tmp:
        (tmp / "whole.txt").write_text("whole")
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert os.listdir(out) == ["whole.txt"]


def test_a_live_writers_partial_folder_is_left_alone(tmp_path):
    out = tmp_path / "out"
    proc, partial = _stager(out)
    try:
        with staged_dir(tmp_path / "out", overwrite=True) as tmp:
            (tmp / "mine.txt").write_text("mine")
        assert (partial / "half.txt").is_file()
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_an_overwrite_killed_between_its_renames_gets_the_old_output_back(tmp_path):
    old = tmp_path / ".out.old-abc"
    old.mkdir()
    (old / "old.txt").write_text("old")
    (tmp_path / ".out.partial-abc").mkdir()  # unlocked: its writer is dead
    with pytest.raises(DataError, match="not empty"):
        with staged_dir(tmp_path / "out"):
            pass
    assert os.listdir(tmp_path) == ["out"]
    assert (tmp_path / "out" / "old.txt").read_text() == "old"


def test_an_overwrite_killed_after_its_renames_loses_the_old_output(tmp_path):
    (tmp_path / ".out.old-abc").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "new.txt").write_text("new")
    atomic_write_bytes(tmp_path / "other.bin", b"1")  # writing something else leaves it be
    assert sorted(os.listdir(tmp_path)) == [".out.old-abc", "other.bin", "out"]
    with staged_dir(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "newer.txt").write_text("newer")
    assert sorted(os.listdir(tmp_path)) == ["other.bin", "out"]


def test_a_killed_file_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    (tmp_path / ".f.bin.partial-xyz").write_bytes(b"half")  # unlocked
    atomic_write_bytes(tmp_path / "f.bin", b"whole")
    assert os.listdir(tmp_path) == ["f.bin"]
