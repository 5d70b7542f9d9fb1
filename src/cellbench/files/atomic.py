"""All-or-nothing outputs: write into a hidden sibling, rename when done (folders and single files).

The hidden sibling is ``.<name>.partial-<random>``. While a process writes
it, it holds an exclusive ``flock`` on it, which the kernel drops when the
process ends however it ends. So a process killed with SIGKILL leaves an
unlocked partial sibling behind, never a half-written ``<name>``, and the
next write of the same output removes it (and, if the kill came in the middle
of replacing an old output, puts the old one back). Anything else that reads
the folder looks only for the final names, so it never sees a partial one.

Errors of the file system (a path under a file, no permission, a full disk)
are raised as :class:`~cellbench.errors.DataError` naming the output.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cellbench.errors import DataError

__all__ = ["atomic_write_bytes", "atomic_writer", "check_output_dir", "staged_dir"]

_PARTIAL = ".partial-"
_OLD = ".old-"


def check_output_dir(out: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse an output folder that cannot be written: a file in the way, or (without ``overwrite``) a non-empty
    folder. Cheap; call it before long work whose result goes there.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as fh:
    ...     try:
    ...         check_output_dir(f"{fh.name}/out")
    ...     except DataError as exc:
    ...         print(exc.problem.split(":")[0])
    is a file, not a folder
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError("output path exists and is not a folder", path=out)
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"is a file, not a folder: cannot make the output folder {out} under it", path=parent)
            break
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError("output folder is not empty (use --overwrite to replace it)", path=out)
    return out


@contextlib.contextmanager
def staged_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` only if the block finishes.

    On any error the temporary folder is removed and ``out`` is untouched. An
    existing non-empty ``out`` is refused unless ``overwrite``. A file-system
    error inside the block is raised as a :class:`DataError` naming the file.
    """
    out = Path(out)
    with _output_errors(out):
        _remove_stale(out)
    check_output_dir(out, overwrite=overwrite)
    made = _top_missing(out.parent)
    try:
        with _output_errors(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_PARTIAL}", dir=out.parent))
    except BaseException:
        _remove_empty_folders(out.parent, made)
        raise
    lock = _lock(tmp)
    try:
        try:
            yield tmp
        except OSError as exc:
            raise _as_data_error(exc, out, tmp) from exc
        with _output_errors(out):
            old = _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty_folders(out.parent, made)
        raise
    finally:
        os.close(lock)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _commit(tmp: Path, out: Path) -> Path | None:
    """Rename ``tmp`` to ``out``, moving an existing ``out`` aside first (returned, to be removed)."""
    if not out.exists():
        tmp.rename(out)
        return None
    old = out.parent / f".{out.name}{_OLD}{tmp.name.rsplit(_PARTIAL, 1)[1]}"
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    return old


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file through a temporary sibling and an atomic rename."""
    with atomic_writer(path) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block finishes (written piece by piece, as
    :func:`atomic_write_bytes` writes it whole): on any error the hidden sibling is removed and ``path`` is
    untouched. A file-system error is raised as a :class:`DataError` naming ``path``.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "lines.jsonl"
    >>> with atomic_writer(out) as fh:
    ...     _ = fh.write(b"1\\n"), fh.write(b"2\\n")
    >>> out.read_bytes()
    b'1\\n2\\n'
    """
    path = Path(path)
    check_output_dir(path.parent, overwrite=True)
    made = _top_missing(path.parent)
    try:
        with _output_errors(path):
            _remove_stale(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_PARTIAL}", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until renamed: see _remove_stale
                    yield fh
                    fh.flush()
                    os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
    except BaseException:
        _remove_empty_folders(path.parent, made)
        raise


def _top_missing(folder: Path) -> Path | None:
    """The highest of ``folder`` and its parents that does not exist yet (what ``mkdir -p`` would create first)."""
    if folder.exists():
        return None
    return next(p for p in (folder, *folder.parents) if p.parent.exists() or p.parent == p)


def _remove_empty_folders(deepest: Path, top: Path | None) -> None:
    """Remove ``deepest`` and its parents up to ``top`` while they are empty."""
    if top is None:
        return
    for folder in (deepest, *deepest.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return


def _remove_stale(out: Path) -> None:
    """Remove what writers of ``out`` killed before they finished left beside it (unlocked partial siblings),
    putting back an old ``out`` that one of them had moved aside."""
    stem = f".{out.name}"
    for partial in glob.glob(glob.escape(str(out.parent / stem)) + _PARTIAL + "*"):
        fd = _try_lock(partial)
        if fd is None:
            continue  # a live writer
        try:
            if os.path.isdir(partial) and not os.path.islink(partial):
                shutil.rmtree(partial, ignore_errors=True)
            else:
                os.unlink(partial)
        finally:
            os.close(fd)
    for old in glob.glob(glob.escape(str(out.parent / stem)) + _OLD + "*"):
        suffix = os.path.basename(old)[len(stem + _OLD):]
        if os.path.exists(out.parent / f"{stem}{_PARTIAL}{suffix}"):
            continue  # its writer is alive (a dead writer's partial folder is gone by now)
        if out.exists():  # the writer got as far as moving the new output in
            shutil.rmtree(old, ignore_errors=True)
        else:  # killed between moving the old output aside and moving the new one in
            os.rename(old, out)


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else can hold a folder mkdtemp made just now
    return fd


def _try_lock(path: str) -> int | None:
    """An open descriptor of ``path`` holding its exclusive lock, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _as_data_error(exc: OSError, out: Path, tmp: Path | None = None) -> DataError:
    """``exc`` as a DataError naming the file (an output by its final name, not the hidden staging one)."""
    name = exc.filename if exc.filename is not None else out
    name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    writing = tmp is None or exc.filename is None or name.startswith(str(tmp))
    if tmp is not None and writing:
        name = str(out) + name[len(str(tmp)):]
    return DataError(f"cannot write the output ({exc.strerror or exc})" if writing else (exc.strerror or str(exc)),
                     path=name)


@contextlib.contextmanager
def _output_errors(out: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _as_data_error(exc, out) from exc
