"""Downloading public datasets into a cache folder, with an integrity check.

The checksum comes from the dataset's record (Zenodo publishes an md5 for
every file) unless it is pinned. A download goes to ``<file>.part`` and is
renamed only after its checksum matches; the archive is then checked (zip
CRCs) and unpacked through a temporary folder, so an interrupted run leaves
nothing that looks complete. Plain ``urllib`` is used, so ``file://`` URLs
take the same path (that is how the tests run it offline).
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, file_digest, staged_dir

__all__ = ["GLIOMA_C6", "REMOTE_DATASETS", "RemoteArchive", "default_cache_dir", "download", "fetch_archive", "unpack"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteArchive:
    """A dataset archive on the web.

    ``record_url`` is a Zenodo API record listing the file with its checksum;
    ``md5`` pins the checksum instead (it wins over the record).
    """

    name: str
    url: str
    filename: str
    record_url: str | None = None
    md5: str | None = None
    licence: str = ""
    size_hint: str = ""


GLIOMA_C6 = RemoteArchive(
    name="glioma-c6",
    url="https://zenodo.org/records/15083188/files/dataset.zip?download=1",
    filename="dataset.zip",
    record_url="https://zenodo.org/api/records/15083188",
    licence="CC BY-NC 4.0",
    size_hint="about 947 MB",
)
REMOTE_DATASETS = {GLIOMA_C6.name: GLIOMA_C6}

Opener = Callable[[str], object]


def default_cache_dir() -> Path:
    """``$CELLBENCH_CACHE``, else ``$XDG_CACHE_HOME/cellbench``, else ``~/.cache/cellbench``."""
    if os.environ.get("CELLBENCH_CACHE"):
        return Path(os.environ["CELLBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cellbench"


def _open(url: str, opener: Opener):
    try:
        return opener(url)
    except (OSError, ValueError) as exc:  # urllib's URLError is an OSError
        raise DataError(f"cannot download ({exc})", path=url) from exc


def _record_entry(remote: RemoteArchive, opener: Opener) -> tuple[str | None, str]:
    """(md5, download url) from the record; the record's link wins over ``remote.url``."""
    if remote.record_url is None:
        return remote.md5, remote.url
    with _open(remote.record_url, opener) as fh:
        try:
            record = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(f"record is not JSON ({exc})", path=remote.record_url) from exc
    for entry in record.get("files", []):
        if entry.get("key") == remote.filename:
            algo, _, value = str(entry.get("checksum", "")).partition(":")
            md5 = value if algo == "md5" else None
            url = entry.get("links", {}).get("self") or remote.url
            return remote.md5 or md5, url
    raise DataError(f"record lists no file {remote.filename!r}", path=remote.record_url)


def fetch_archive(
    remote: RemoteArchive,
    cache_dir: str | Path | None = None,
    *,
    opener: Opener | None = None,
    progress: bool = True,
) -> Path:
    """The archive in the cache, downloaded and checksum-verified if not already there.

    ``opener`` opens a URL (default ``urllib.request.urlopen``).
    """
    # The network modules and tqdm (~60 ms of imports) are imported here: every `cellbench`
    # command imports this module to list the datasets, and most never download.
    import http.client
    import urllib.request

    from tqdm import tqdm

    opener = opener or urllib.request.urlopen
    folder = Path(cache_dir or default_cache_dir()) / remote.name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.filename
    md5, url = _record_entry(remote, opener)
    if md5 is None:
        log.warning("no checksum known for %s; only the zip's own CRCs will be checked", remote.filename)
    if target.is_file() and (md5 is None or file_digest(target, "md5") == md5):
        return target
    part = target.with_name(target.name + ".part")
    try:
        with _open(url, opener) as response, open(part, "wb") as out:
            total = getattr(response, "length", None)
            with tqdm(total=total, unit="B", unit_scale=True, desc=remote.filename, disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except (OSError, http.client.HTTPException) as exc:  # connection lost mid-way (URLError is an OSError)
        part.unlink(missing_ok=True)
        raise DataError(f"download interrupted ({exc}); the partial download was removed", path=url) from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    got = file_digest(part, "md5")
    if md5 is not None and got != md5:
        part.unlink()
        raise DataError(f"checksum mismatch: md5 {got}, expected {md5}; the partial download was removed", path=url)
    os.replace(part, target)
    return target


def unpack(archive: str | Path, dest: str | Path) -> Path:
    """Check the zip's CRCs and unpack it to ``dest`` atomically; refuses unsafe member paths."""
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


def download(
    dataset: str | RemoteArchive = "glioma-c6",
    cache_dir: str | Path | None = None,
    *,
    archive: str | Path | None = None,
    opener: Opener | None = None,
    progress: bool = True,
) -> Path:
    """Download (or take ``archive``, a copy fetched by hand), verify and unpack a dataset.

    ``dataset`` is a name from ``REMOTE_DATASETS`` or a :class:`RemoteArchive`.

    Returns the unpacked folder, ``<cache>/<name>/data``; a second call finds it
    there and downloads nothing.
    """
    remote = dataset if isinstance(dataset, RemoteArchive) else REMOTE_DATASETS.get(dataset)
    if remote is None:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(REMOTE_DATASETS)}")
    folder = Path(cache_dir or default_cache_dir()) / remote.name
    data, marker = folder / "data", folder / "data.complete"
    if archive is None and marker.is_file() and data.is_dir():
        return data
    if archive is not None:
        archive = Path(archive)
        if remote.md5 is not None and file_digest(archive, "md5") != remote.md5:
            raise DataError(f"checksum mismatch: expected md5 {remote.md5}", path=archive)
    else:
        archive = fetch_archive(remote, cache_dir, opener=opener, progress=progress)
    marker.unlink(missing_ok=True)
    unpack(archive, data)
    atomic_write_bytes(marker, json.dumps({"archive": str(archive), "md5": file_digest(archive, "md5")}).encode())
    return data
