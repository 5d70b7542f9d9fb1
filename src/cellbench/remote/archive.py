"""Unpacking a downloaded zip archive, checked and all-or-nothing."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from cellbench.errors import DataError
from cellbench.files import staged_dir

__all__ = ["check_zip", "unpack_zip"]


def _unsafe(member: str) -> bool:
    """A member name that would land outside the folder it is unpacked to (absolute, or through ``..``)."""
    parts = PurePosixPath(member.replace("\\", "/")).parts
    return member.startswith(("/", "\\")) or ".." in parts


def check_zip(archive: str | Path) -> None:
    """Refuse ``archive`` unless it is a zip whose CRCs check and whose members all stay inside its folder.

    Callers run it on a file given by hand before the cache takes (and perhaps trusts) it.
    """
    import zipfile
    import zlib

    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                bad = zf.testzip()
            except (zlib.error, EOFError) as exc:  # a damaged deflate stream fails before its CRC is checked
                raise DataError(f"corrupt archive: cannot decompress ({exc})", path=archive) from exc
            names = zf.namelist()
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a zip archive ({exc})", path=archive) from exc
    except OSError as exc:
        raise DataError(f"cannot read the archive ({exc.strerror or exc})", path=archive) from exc
    if bad is not None:
        raise DataError(f"corrupt archive: CRC check failed for member {bad!r}", path=archive)
    unsafe = [name for name in names if _unsafe(name)]
    if unsafe:
        raise DataError(f"unsafe path in archive: {unsafe[0]!r}", path=archive)


def unpack_zip(archive: str | Path, dest: str | Path) -> Path:
    """Check the zip (:func:`check_zip`) and unpack it to ``dest`` atomically."""
    import zipfile

    archive, dest = Path(archive), Path(dest)
    check_zip(archive)
    try:
        with zipfile.ZipFile(archive) as zf, staged_dir(dest, overwrite=True) as tmp:
            zf.extractall(tmp)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a zip archive ({exc})", path=archive) from exc
    return dest
