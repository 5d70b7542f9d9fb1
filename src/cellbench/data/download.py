"""Downloading public datasets into a cache folder, with an integrity check.

The checksum comes from the dataset's record (Zenodo publishes an md5 for
every file) unless it is pinned. The download itself is cellbench's one
downloader, :func:`cellbench.remote.fetch_file`: ``<file>.part``, resumed
after a cut transfer, renamed only after its checksum matches, a mirror
(``$CELLBENCH_MIRROR``) tried first. The archive is then checked (zip CRCs,
member paths, the unpacked size and number of members against
:class:`~cellbench.remote.UnpackLimits`) and unpacked through a temporary
folder, so an interrupted or refused run leaves nothing that looks complete.
``file://`` URLs take the same path (that is how the tests run it offline).

When the record cannot be read (no network, a firewall), the file is not
taken unverified behind the user's back: a pinned checksum still checks it,
and otherwise the download stops with an error that says so, unless
``allow_unverified`` asks to trust the copy on first use (recorded only
once it has unpacked).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, file_digest
from cellbench.remote import (
    DEFAULT_LIMITS,
    Fetched,
    RemoteFile,
    UnpackLimits,
    default_cache_dir,
    fetching,
    mirror_from_env,
    unpack_zip,
)

__all__ = ["GLIOMA_C6", "MAX_RECORD_BYTES", "REMOTE_DATASETS", "RemoteArchive", "default_cache_dir", "download",
           "fetch_archive", "fetching_archive", "unpack"]

#: The most of a Zenodo record read (a record listing a few files is a few KB).
MAX_RECORD_BYTES = 4 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteArchive:
    """A dataset archive on the web.

    ``record_url`` is a Zenodo API record listing the file with its checksum
    and size; ``md5`` pins the checksum instead (it wins over the record);
    ``sha256`` pins one more, checked as well.
    """

    name: str
    url: str
    filename: str
    record_url: str | None = None
    md5: str | None = None
    sha256: str | None = None
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


def _record_entry(remote: RemoteArchive, opener: Opener) -> tuple[str | None, str, int | None]:
    """(md5, download url, size) from the record; the record's link wins over ``remote.url``."""
    if remote.record_url is None:
        return remote.md5, remote.url, None
    with _open(remote.record_url, opener) as fh:
        try:
            data = fh.read(MAX_RECORD_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot download ({exc})", path=remote.record_url) from exc
    if len(data) > MAX_RECORD_BYTES:
        raise DataError(f"record is larger than {MAX_RECORD_BYTES >> 20} MiB; not a Zenodo record",
                        path=remote.record_url)
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"record is not JSON ({exc})", path=remote.record_url) from exc
    for entry in record.get("files", []) if isinstance(record, dict) else []:
        if isinstance(entry, dict) and entry.get("key") == remote.filename:
            algo, _, value = str(entry.get("checksum", "")).partition(":")
            md5 = value if algo == "md5" else None
            url = (entry.get("links") or {}).get("self") or remote.url
            size = entry.get("size")
            size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
            return remote.md5 or md5, url, size
    raise DataError(f"record lists no file {remote.filename!r}", path=remote.record_url)


def fetch_archive(
    remote: RemoteArchive,
    cache_dir: str | Path | None = None,
    *,
    opener: Opener | None = None,
    progress: bool = True,
    mirror: str | None = None,
    allow_unverified: bool = False,
) -> Path:
    """The archive in the cache, downloaded and checksum-verified if not already there.

    ``opener`` opens a URL (default ``urllib.request.urlopen``); ``mirror`` is
    a folder or http(s) URL holding a copy of the archive (default
    ``$CELLBENCH_MIRROR``). When the record cannot be read and no checksum is
    pinned, a :class:`DataError` says so, unless ``allow_unverified`` (then
    the copy is trusted on first use). To record that trust only after the
    archive has unpacked, use :func:`fetching_archive`.
    """
    with fetching_archive(remote, cache_dir, opener=opener, progress=progress, mirror=mirror,
                          allow_unverified=allow_unverified) as path:
        return path


def fetching_archive(
    remote: RemoteArchive,
    cache_dir: str | Path | None = None,
    *,
    opener: Opener | None = None,
    progress: bool = True,
    mirror: str | None = None,
    allow_unverified: bool = False,
) -> Fetched:
    """:func:`fetch_archive` as :func:`cellbench.remote.fetching`: downloaded now, trust on first use (if any)
    recorded only when the ``with`` block (which unpacks the archive) succeeds."""
    # urllib (~60 ms of imports) is imported here: every `cellbench` command imports this
    # module to list the datasets, and most never download.
    import urllib.request

    mirror = mirror_from_env("data") if mirror is None else mirror or None
    folder = Path(cache_dir or default_cache_dir()) / remote.name
    reason = "the publisher gives no checksum for it"
    try:
        md5, url, size = _record_entry(remote, opener or urllib.request.urlopen)
    except DataError as exc:
        md5, url, size = remote.md5, remote.url, None
        pinned = " and ".join(f"{a} {v}" for a, v in (("md5", remote.md5), ("sha256", remote.sha256)) if v)
        if pinned:
            log.warning("%s; checking %s against the pinned %s instead", exc, remote.filename, pinned)
        elif allow_unverified:
            reason = f"its publisher's checksum could not be read ({exc}), and unverified copies were allowed"
        else:
            raise DataError(f"cannot read the publisher's checksum for {remote.filename} ({exc.problem}); without "
                            f"it no copy{' (the mirror ' + mirror + ' was set)' if mirror else ''} can be verified, "
                            "so none is taken. Try again when the record can be reached, or allow an unverified "
                            "copy (--allow-unverified; allow_unverified=True): it is then trusted on first use",
                            path=exc.path) from exc
    file_opener = None if opener is None else (lambda request, timeout: opener(request.full_url))
    file = RemoteFile(remote.filename, url, size=size, md5=md5, sha256=remote.sha256)
    return fetching(file, folder, mirror=mirror or "", progress=progress, opener=file_opener,
                    unverified_reason=reason)


def unpack(archive: str | Path, dest: str | Path, *, limits: UnpackLimits = DEFAULT_LIMITS) -> Path:
    """Check the zip's CRCs and unpack it to ``dest`` atomically; refuses unsafe member paths and archives
    that unpack past ``limits``."""
    return unpack_zip(archive, dest, limits=limits)


def download(
    dataset: str | RemoteArchive = "glioma-c6",
    cache_dir: str | Path | None = None,
    *,
    archive: str | Path | None = None,
    opener: Opener | None = None,
    progress: bool = True,
    limits: UnpackLimits = DEFAULT_LIMITS,
    allow_unverified: bool = False,
) -> Path:
    """Download (or take ``archive``, a copy fetched by hand), verify and unpack a dataset.

    ``dataset`` is a name from ``REMOTE_DATASETS`` or a :class:`RemoteArchive`;
    ``limits`` caps what the archive may unpack to; ``allow_unverified``: see
    :func:`fetch_archive`.

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
        source = contextlib.nullcontext(archive)
    else:
        source = fetching_archive(remote, cache_dir, opener=opener, progress=progress,
                                  allow_unverified=allow_unverified)
    with source as archive:
        marker.unlink(missing_ok=True)
        unpack(archive, data, limits=limits)
    atomic_write_bytes(marker, json.dumps({"archive": str(archive), "md5": file_digest(archive, "md5")}).encode())
    return data
