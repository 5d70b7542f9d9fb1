"""Unpacking a downloaded zip archive, checked, capped and all-or-nothing.

Before anything is written the member names are checked (none may land
outside the folder), and so are the number of members and the sizes the zip
declares, against :class:`~cellbench.remote.unpack_limits.UnpackLimits`.
While unpacking, the bytes actually written are counted against the same cap
(headers can lie), and every member's CRC is checked as it is read. The
members go to a staged folder that takes the destination's name only when all
of them are in, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from cellbench.errors import DataError
from cellbench.files import staged_dir
from cellbench.remote.unpack_limits import DEFAULT_LIMITS, UnpackBudget, UnpackLimits

__all__ = ["check_zip", "unpack_zip"]


def _unsafe(member: str) -> bool:
    """A member name that would land outside the folder it is unpacked to (absolute, or through ``..``)."""
    parts = PurePosixPath(member.replace("\\", "/")).parts
    return member.startswith(("/", "\\")) or ".." in parts


def _declared_size(info: zipfile.ZipInfo) -> int:
    """The unpacked size the zip's directory gives for one member (checked up front, never trusted alone)."""
    return info.file_size


@contextmanager
def _reading(archive: Path) -> Iterator[zipfile.ZipFile]:
    """The zip open for reading; its format, decompression and CRC errors as :class:`DataError` naming it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            yield zf
    except zipfile.BadZipFile as exc:
        if "CRC" in str(exc):
            raise DataError(f"corrupt archive: CRC check failed ({exc})", path=archive) from exc
        raise DataError(f"not a zip archive ({exc})", path=archive) from exc
    except (zlib.error, EOFError, NotImplementedError) as exc:  # a damaged deflate stream fails before its CRC
        raise DataError(f"corrupt archive: cannot decompress ({type(exc).__name__}: {exc})", path=archive) from exc
    except OSError as exc:  # writing a member fails as a DataError naming the output (staged_dir)
        raise DataError(f"cannot read the archive ({exc.strerror or exc})", path=archive) from exc


def _check_members(zf: zipfile.ZipFile, archive: Path, limits: UnpackLimits) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    unsafe = [m.filename for m in members if _unsafe(m.filename)]
    if unsafe:
        raise DataError(f"unsafe path in archive: {unsafe[0]!r}", path=archive)
    budget = UnpackBudget(limits, archive)
    declared = 0
    for m in members:
        budget.entry(m.filename)
        declared += _declared_size(m)
        if declared > limits.max_bytes:
            raise budget.refuse_bytes(m.filename, declared=True)
    return members


def check_zip(archive: str | Path, *, limits: UnpackLimits = DEFAULT_LIMITS) -> None:
    """Refuse ``archive`` unless it is a zip whose CRCs check, whose members all stay inside its folder,
    and whose member count and declared size are within ``limits``.

    Callers run it on a file given by hand before the cache takes it.
    """
    archive = Path(archive)
    with _reading(archive) as zf:
        _check_members(zf, archive, limits)
        bad = zf.testzip()
    if bad is not None:
        raise DataError(f"corrupt archive: CRC check failed for member {bad!r}", path=archive)


def unpack_zip(archive: str | Path, dest: str | Path, *, limits: UnpackLimits = DEFAULT_LIMITS) -> Path:
    """Unpack the zip to ``dest`` atomically (replacing it), checked and capped by ``limits`` (see the module).

    >>> import io, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with zipfile.ZipFile(Path(d, "a.zip"), "w", zipfile.ZIP_DEFLATED) as zf:
    ...         zf.writestr("zeros.bin", bytes(100_000))
    ...     try:
    ...         unpack_zip(Path(d, "a.zip"), Path(d, "out"), limits=UnpackLimits(max_bytes=50_000))
    ...     except DataError as exc:
    ...         print(exc.problem.split(" (")[0], Path(d, "out").exists())
    declares that it unpacks to more than the cap of 48.8 KiB False
    """
    archive, dest = Path(archive), Path(dest)
    with _reading(archive) as zf, staged_dir(dest, overwrite=True) as tmp:
        budget = UnpackBudget(limits, archive)
        for info in _check_members(zf, archive, limits):
            budget.entry(info.filename)
            parts = PurePosixPath(info.filename).parts  # a backslash is part of a name on POSIX, as in zipfile
            target = tmp.joinpath(*parts)
            if info.is_dir() or not parts:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(target, "wb") as out:
                budget.copy(source, out, info.filename)
    return dest
