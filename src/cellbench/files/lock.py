"""One writer per folder: an exclusive lock that dies with its process.

:func:`folder_lock` takes an exclusive ``flock`` on a lock file in the
folder. The kernel drops a ``flock`` when the process holding it ends, so a
process killed with SIGKILL leaves no stale lock: the lock file stays (with
the pid of its last holder, for messages) but locks nothing. The lock file is
never removed, since removing it would let a second process lock a new file
of the same name while a first one still holds the old one.

Locks are advisory and local: they keep cellbench processes from writing the
same folder at once on one machine (and on file systems whose ``flock`` works
across machines), not other programs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from cellbench.errors import DataError

__all__ = ["LOCK_FILE", "folder_lock"]

LOCK_FILE = ".cellbench.lock"


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, what: str = "folder", name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block; yields the lock file.

    A second holder, in this process or another, is refused at once with a
    :class:`DataError` naming the folder and the pid that holds it.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, folder_lock(d, what="run folder"):
    ...     try:
    ...         with folder_lock(d, what="run folder"):
    ...             pass
    ...     except DataError as exc:
    ...         print(exc.problem.split(" (")[0])
    another cellbench process is writing this run folder
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DataError(f"cannot lock the {what} ({exc.strerror or exc})", path=folder) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise DataError(
                f"another cellbench process is writing this {what} (pid {holder}, lock file {path}); "
                "wait for it to finish or stop it: two writers would corrupt it", path=folder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _holder(fd: int) -> str:
    """The pid the lock file names, as text (``unknown`` when it names none)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
