"""Reading a gallery (a folder or an http(s) URL): its index, searching it, pulling a model into the cache.

:func:`pull` downloads a model's archive with :func:`cellbench.remote.fetch_file`
(checked against the sha256 and size in the index, resumed when cut), unpacks
it into ``$CELLBENCH_CACHE/gallery/<name>/`` through a staged folder renamed
into place, and records where it came from in ``gallery-source.json`` beside
``model.json``. A model already pulled with the same checksum is not fetched
again. A checksum mismatch, a 404 or no network is a
:class:`~cellbench.errors.DataError` naming the URL; nothing half-written
stays in the cache. The archive is unpacked within
:data:`~cellbench.remote.unpack_limits.MODEL_LIMITS` (``limits`` raises
them), and ``index.json`` is read up to
:data:`~cellbench.gallery.publish.MAX_INDEX_BYTES` only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from cellbench.errors import DataError
from cellbench.gallery.archive import unpack
from cellbench.gallery.index import SortKey, ordered
from cellbench.gallery.publish import (
    INDEX_FILE,
    MAX_INDEX_BYTES,
    check_name,
    index_too_big,
    parse_index,
    read_index_file,
)
from cellbench.remote.unpack_limits import MODEL_LIMITS, UnpackLimits

__all__ = ["GALLERY_SUBDIR", "SOURCE_FILE", "find_entry", "is_url", "pull", "read_index", "search"]

#: Folder of the cache that pulled gallery models go to.
GALLERY_SUBDIR = "gallery"
#: The file a pulled model directory gets beside model.json: the gallery, name and archive checksum.
SOURCE_FILE = "gallery-source.json"


def is_url(gallery: str | Path) -> bool:
    return str(gallery).startswith(("http://", "https://"))


def _join(gallery: str, rel: str) -> str:
    return gallery.rstrip("/") + "/" + rel.lstrip("/")


def read_index(gallery: str | Path, *, timeout: float = 30.0, max_index_bytes: int = MAX_INDEX_BYTES) -> dict:
    """The ``index.json`` of a gallery folder or http(s) URL, checked; refused past ``max_index_bytes``
    (a ``Content-Length`` over it before the body is read; otherwise after ``max_index_bytes + 1`` bytes)."""
    if not is_url(gallery):
        folder = Path(gallery)
        if not (folder / INDEX_FILE).is_file():
            raise DataError(f"not a gallery folder (no {INDEX_FILE})", path=folder)
        return read_index_file(folder, max_index_bytes=max_index_bytes)
    url = _join(str(gallery), INDEX_FILE)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = getattr(response, "length", None)
            if length is not None and length > max_index_bytes:
                raise index_too_big(length, max_index_bytes, source=url)
            data = response.read(max_index_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise DataError(f"gallery index not available (HTTP {exc.code} {exc.reason})", path=url) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot reach the gallery ({reason}); check the URL, the network, or use a copy of the "
                        f"gallery folder", path=url) from exc
    if len(data) > max_index_bytes:
        raise index_too_big(None, max_index_bytes, source=url)
    return parse_index(data, source=url)


def search(
    entries: Sequence[dict],
    *,
    text: str | None = None,
    task: str | None = None,
    modality: str | None = None,
    target: str | None = None,
    method: str | None = None,
    sort: SortKey = "seggal",
) -> list[dict]:
    """Index entries matching every filter given (case-insensitive; ``text`` searches name, description,
    method, dataset, task, modality, target and channels), in the ``sort`` order."""
    def has(value, wanted) -> bool:
        return wanted is None or wanted.lower() in str(value or "").lower()

    found = []
    for e in entries:
        haystack = " ".join(str(e.get(k) or "") for k in ("name", "description", "method", "dataset", "task",
                                                           "modality", "target", "channels"))
        if (has(haystack, text) and has(e.get("task"), task) and has(e.get("modality"), modality)
                and has(e.get("target"), target) and has(e.get("method"), method)):
            found.append(e)
    return ordered(found, sort)


def find_entry(index: dict, name: str, *, gallery: str | Path) -> dict:
    for entry in index["models"]:
        if entry["name"] == name:
            return entry
    names = ", ".join(sorted(e["name"] for e in index["models"])) or "none"
    raise DataError(f"the gallery has no model named {name!r}; models: {names}", path=str(gallery))


def _pulled(dest: Path, sha256: str) -> bool:
    try:
        return json.loads((dest / SOURCE_FILE).read_text()).get("sha256") == sha256
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def pull(
    name: str,
    gallery: str | Path,
    *,
    cache: str | Path | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    limits: UnpackLimits = MODEL_LIMITS,
) -> Path:
    """The model directory of gallery model ``name``, pulled into ``cache/gallery/<name>`` unless it is there.

    ``cache`` (the cellbench cache folder) defaults to :func:`cellbench.remote.default_cache_dir`
    (``$CELLBENCH_CACHE``); ``limits`` caps what the archive may unpack to (16 GiB, 10,000 entries).
    """
    from cellbench.remote import RemoteFile, check_file, default_cache_dir, fetch_file, undo_new_folders

    check_name(name)
    entry = find_entry(read_index(gallery, timeout=timeout), name, gallery=gallery)
    archive = entry["archive"]  # path, sha256 and size checked by read_index
    sha256, size, rel = archive["sha256"], archive["size"], archive["path"]
    root = (Path(cache) if cache is not None else default_cache_dir()) / GALLERY_SUBDIR
    dest = root / name
    if _pulled(dest, sha256):
        return dest
    source = _join(str(gallery), rel) if is_url(gallery) else str(Path(gallery) / rel)
    remote = RemoteFile("model.tar.gz", source, size=size, sha256=sha256)
    if not is_url(gallery):  # a folder: say what is wrong with the gallery's own file, before copying it
        check = check_file(source, remote)
        if not check.ok:
            problem = "is missing" if check.problem == "missing" else f"does not match the index ({check.problem})"
            raise DataError(f"archive of gallery model {name!r} {problem}", path=source)
    downloads = root / ".downloads" / f"{name}-{sha256[:16]}"
    with undo_new_folders(downloads):
        try:
            path = fetch_file(remote, downloads, mirror="", timeout=timeout, progress=progress)
            record = {"name": name, "gallery": str(gallery), "archive": source, "sha256": sha256, "size": size,
                      "pulled_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            try:
                unpack(path, dest, overwrite=True, extra={SOURCE_FILE: json.dumps(record, indent=2).encode()},
                       limits=limits)
            except DataError as exc:  # name the gallery's archive, not the checked copy in the cache
                raise DataError(exc.problem, path=source) from exc
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
    with contextlib.suppress(OSError):
        downloads.parent.rmdir()  # only when no other download is under way
    return dest
