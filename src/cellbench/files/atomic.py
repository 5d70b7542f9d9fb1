"""All-or-nothing outputs: write into a hidden sibling, rename when done (folders and single files)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cellbench.errors import DataError

__all__ = ["atomic_write_bytes", "staged_dir"]


@contextlib.contextmanager
def staged_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` only if the block finishes.

    On any error the temporary folder is removed and ``out`` is untouched. An
    existing non-empty ``out`` is refused unless ``overwrite``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError("output path exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError("output folder is not empty (use --overwrite to replace it)", path=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file through a temporary sibling and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
