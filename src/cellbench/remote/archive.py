"""Unpacking a downloaded zip archive, checked and all-or-nothing."""

from __future__ import annotations

from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import staged_dir

__all__ = ["unpack_zip"]


def unpack_zip(archive: str | Path, dest: str | Path) -> Path:
    """Check the zip's CRCs and unpack it to ``dest`` atomically; refuses unsafe member paths."""
    import zipfile
    import zlib

    archive, dest = Path(archive), Path(dest)
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                bad = zf.testzip()
            except (zlib.error, EOFError) as exc:  # a damaged deflate stream fails before its CRC is checked
                raise DataError(f"corrupt archive: cannot decompress ({exc})", path=archive) from exc
            if bad is not None:
                raise DataError(f"corrupt archive: CRC check failed for member {bad!r}", path=archive)
            for member in zf.namelist():
                if member.startswith(("/", "\\")) or ".." in Path(member).parts:
                    raise DataError(f"unsafe path in archive: {member!r}", path=archive)
            with staged_dir(dest, overwrite=True) as tmp:
                zf.extractall(tmp)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a zip archive ({exc})", path=archive) from exc
    return dest
