"""folder_lock: one writer per folder, across processes, and no stale lock after SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from cellbench.errors import DataError
from cellbench.files import LOCK_FILE, folder_lock

HOLD = textwrap.dedent("""
    import sys, time
    from cellbench.files import folder_lock
    with folder_lock(sys.argv[1], what="run folder"):
        print("locked", flush=True)
        time.sleep(60)
""")


def _holder(folder) -> subprocess.Popen:
    """Another process holding the lock of ``folder`` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    proc.stdout.close()
    assert line == "locked"
    return proc


def test_a_second_process_is_refused_naming_the_folder_and_the_holder(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(DataError, match=f"another cellbench process is writing this run folder \\(pid {proc.pid},"):
            with folder_lock(tmp_path / "run", what="run folder"):
                pass
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = _holder(tmp_path / "run")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(proc.pid)  # the file stays, the lock does not
    with folder_lock(tmp_path / "run") as path:
        assert path.read_text().strip() != str(proc.pid)


def test_the_lock_is_released_at_the_end_of_the_block(tmp_path):
    with folder_lock(tmp_path):
        pass
    with folder_lock(tmp_path):
        with pytest.raises(DataError, match="another cellbench process"):
            with folder_lock(tmp_path):
                pass


def test_a_folder_that_cannot_be_made_is_a_data_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cannot lock the folder") as err:
        with folder_lock(tmp_path / "file" / "run"):
            pass
    assert err.value.path == str(tmp_path / "file" / "run")
