"""Downloading public datasets into a cache folder, with an integrity check.

The checksum comes from the dataset's record (Zenodo publishes an md5 for
every file) unless it is pinned. The download itself is cellbench's one
downloader, :func:`cellbench.remote.fetch_file`: ``<file>.part``, resumed
after a cut transfer, renamed only after its checksum matches, a mirror
(``$CELLBENCH_MIRROR``) tried first. The archive is then checked (zip CRCs)
and unpacked through a temporary folder, so an interrupted run leaves
nothing that looks complete. ``file://`` URLs take the same path (that is
how the tests run it offline).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, file_digest
from cellbench.remote import RemoteFile, default_cache_dir, fetch_file, mirror_from_env, unpack_zip

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
    mirror: str | None = None,
) -> Path:
    """The archive in the cache, downloaded and checksum-verified if not already there.

    ``opener`` opens a URL (default ``urllib.request.urlopen``); ``mirror`` is
    a folder or http(s) URL holding a copy of the archive (default ``$CELLBENCH_MIRROR``).
    """
    # urllib (~60 ms of imports) is imported here: every `cellbench` command imports this
    # module to list the datasets, and most never download.
    import urllib.request

    mirror = mirror_from_env("data") if mirror is None else mirror or None
    folder = Path(cache_dir or default_cache_dir()) / remote.name
    try:
        md5, url = _record_entry(remote, opener or urllib.request.urlopen)
    except DataError as exc:
        if not mirror:
            raise
        # Behind a firewall the record is out of reach too: the mirror's copy is checked against
        # the pinned md5, or trusted on first use.
        log.warning("%s; taking %s from the mirror %s without the record's checksum", exc, remote.filename, mirror)
        md5, url = remote.md5, remote.url
    file_opener = None if opener is None else (lambda request, timeout: opener(request.full_url))
    return fetch_file(RemoteFile(remote.filename, url, md5=md5), folder, mirror=mirror or "", progress=progress,
                      opener=file_opener)


def unpack(archive: str | Path, dest: str | Path) -> Path:
    """Check the zip's CRCs and unpack it to ``dest`` atomically; refuses unsafe member paths."""
    return unpack_zip(archive, dest)


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
