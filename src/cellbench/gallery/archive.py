"""Model archives: a model directory as one deterministic ``.tar.gz``, and its safe unpacking.

Deterministic means the same model directory always gives the same bytes, so
the archive's sha256 names the model: entries in sorted order under
``model/``, modification times, owners and the gzip header time set to zero,
modes reduced to 644 (files) and 755 (folders). Publishing a model twice gives
the same checksum; a user can rebuild the archive from an unpacked copy and
compare.

Unpacking accepts only what :func:`pack` writes (regular files and folders
under ``model/``): an absolute path, a ``..``, a link or a device in an
archive is refused with a :class:`~cellbench.errors.DataError` naming the
archive. It reads the archive as a stream, one entry at a time, and counts
the entries and the bytes it writes against
:data:`~cellbench.remote.unpack_limits.MODEL_LIMITS` (16 GiB, 10,000
entries; ``limits`` raises them): a small ``.tar.gz`` that would unpack to
gigabytes is refused once it passes the cap. Everything goes to a staged
folder renamed at the end, so a refused archive leaves nothing.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, staged_dir
from cellbench.remote.unpack_limits import MODEL_LIMITS, UnpackBudget, UnpackLimits

__all__ = ["ARCHIVE_ROOT", "pack", "pack_bytes", "unpack"]

#: The folder every archive entry lies under.
ARCHIVE_ROOT = "model"


def _entry(name: str, *, size: int = 0, folder: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.mode = 0o755 if folder else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_bytes(model_dir: str | Path) -> bytes:
    """The deterministic ``.tar.gz`` of ``model_dir`` as bytes (model directories are megabytes, not gigabytes)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError("model directory not found", path=model_dir)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_entry(ARCHIVE_ROOT, folder=True))
        for path in sorted(model_dir.rglob("*"), key=lambda p: p.relative_to(model_dir).as_posix()):
            name = f"{ARCHIVE_ROOT}/{path.relative_to(model_dir).as_posix()}"
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise DataError("model directory holds a link or special file; archives hold plain files only",
                                path=path)
            if path.is_dir():
                tar.addfile(_entry(name, folder=True))
            else:
                data = path.read_bytes()
                tar.addfile(_entry(name, size=len(data)), io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def pack(model_dir: str | Path, archive: str | Path) -> int:
    """Write the archive of ``model_dir`` to ``archive`` atomically; returns its size in bytes.

    >>> import tempfile, hashlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     m = Path(d, "m"); m.mkdir(); _ = (m / "model.json").write_text("{}")
    ...     _ = pack(m, Path(d, "a.tar.gz")); _ = pack(m, Path(d, "b.tar.gz"))
    ...     Path(d, "a.tar.gz").read_bytes() == Path(d, "b.tar.gz").read_bytes()
    True
    """
    data = pack_bytes(model_dir)
    atomic_write_bytes(archive, data)
    return len(data)


def _check_member(m: tarfile.TarInfo, archive: Path) -> None:
    parts = PurePosixPath(m.name).parts
    if not parts or parts[0] != ARCHIVE_ROOT or PurePosixPath(m.name).is_absolute() or ".." in parts:
        raise DataError(f"archive entry {m.name!r} lies outside {ARCHIVE_ROOT}/", path=archive)
    if not (m.isfile() or m.isdir()):
        raise DataError(f"archive entry {m.name!r} is a link or special file; model archives hold plain files",
                        path=archive)


def unpack(archive: str | Path, dest: str | Path, *, overwrite: bool = False,
           extra: Mapping[str, bytes] | None = None, limits: UnpackLimits = MODEL_LIMITS) -> Path:
    """Unpack a model archive into folder ``dest``, all or nothing (a staged folder renamed at the end);
    ``extra`` files (name: bytes) are written beside the archive's, in the same staged folder.

    Refused (a :class:`DataError`, nothing left) past ``limits``, counted as it unpacks.

    >>> import tempfile
    >>> from cellbench.remote.unpack_limits import UnpackLimits
    >>> with tempfile.TemporaryDirectory() as d:
    ...     m = Path(d, "m"); m.mkdir(); _ = (m / "weights.bin").write_bytes(bytes(100_000))
    ...     _ = pack(m, Path(d, "m.tar.gz"))
    ...     try:
    ...         unpack(Path(d, "m.tar.gz"), Path(d, "out"), limits=UnpackLimits(max_bytes=50_000))
    ...     except DataError as exc:
    ...         print(exc.problem.split(" (")[0], Path(d, "out").exists())
    unpacks to more than the cap of 48.8 KiB False
    """
    archive, dest = Path(archive), Path(dest)
    try:
        tar = tarfile.open(archive, mode="r|gz")  # a stream: entries are read (and counted) one at a time
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"not a readable model archive ({type(exc).__name__}: {exc})", path=archive) from exc
    budget = UnpackBudget(limits, archive)
    with tar, staged_dir(dest, overwrite=overwrite) as tmp:
        try:
            for member in tar:
                budget.entry(member.name)
                _check_member(member, archive)
                target = tmp.joinpath(*PurePosixPath(member.name).parts[1:])
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise DataError(f"archive entry {member.name!r} has no data", path=archive)
                with source, open(target, "wb") as out:
                    budget.copy(source, out, member.name)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(f"model archive is corrupt ({type(exc).__name__}: {exc})", path=archive) from exc
        for name, data in (extra or {}).items():
            (tmp / name).write_bytes(data)
    return dest
