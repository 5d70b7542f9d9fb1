"""Publishing a model directory into a gallery folder.

A gallery is a static folder any web server or Zenodo can host::

    index.json                        every model: summary, archive path, sha256, size, card files
    index.html                        the browsable page (works from file://)
    models/<name>/<sha>/model.tar.gz  the model directory as a deterministic archive
    models/<name>/<sha>/card.json     the model card; card.md and card.html beside it

``<sha>`` is the first 16 hex digits of the archive's sha256. :func:`publish`
writes that folder staged and renamed into place, then rewrites ``index.json``
and ``index.html`` each through a temporary file and a rename, all under a
lock on the gallery folder: a reader (or a web server) sees the old gallery or
the new one, never half of either, and two publishers never interleave. A replaced model's old folder is removed only
after the new index is in place, so an index never names a missing archive.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from cellbench import __version__
from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, bytes_digest, folder_lock, staged_dir
from cellbench.gallery.archive import pack_bytes
from cellbench.gallery.card import model_card
from cellbench.gallery.index import INDEX_FORMAT, INDEX_VERSION, index_entry, ordered, with_overall
from cellbench.gallery.render import card_html, card_markdown, index_html

__all__ = ["ARCHIVE_FILE", "INDEX_FILE", "MAX_INDEX_BYTES", "MODELS_DIR", "check_name", "index_too_big", "parse_index",
           "publish", "read_index_file", "write_index"]

INDEX_FILE = "index.json"
#: The largest ``index.json`` read (an entry is about 1.5 KB: room for some 10,000 models); a bigger one is
#: refused before it is parsed, so a hostile gallery cannot fill memory through its index.
MAX_INDEX_BYTES = 16 << 20
MODELS_DIR = "models"
ARCHIVE_FILE = "model.tar.gz"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """A gallery name: letters, digits, ``.``, ``_``, ``-`` (a folder and URL component as is)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise DataError(f"gallery model name {name!r} must be 1-100 letters, digits, '.', '_' or '-', "
                        f"starting with a letter or digit")
    return name


def index_too_big(size: int | None, max_bytes: int, *, source: str) -> DataError:
    """The error for an index of ``size`` bytes (None: more than ``max_bytes``), over the cap."""
    what = f"{size:,} bytes" if size is not None else f"more than {max_bytes:,} bytes"
    return DataError(f"gallery index is {what}, over the cap of {max_bytes:,} bytes for an index; refused "
                     f"(max_index_bytes raises the cap)", path=source)


def read_index_file(gallery: Path, *, max_index_bytes: int = MAX_INDEX_BYTES) -> dict:
    """The index of gallery folder ``gallery`` (at most ``max_index_bytes``); an empty one when there is none yet."""
    path = gallery / INDEX_FILE
    if not path.exists():
        return {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "models": []}
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_index_bytes + 1)
    except OSError as exc:
        raise DataError(f"cannot read the gallery index ({exc})", path=path) from exc
    if len(data) > max_index_bytes:
        raise index_too_big(None, max_index_bytes, source=str(path))
    return parse_index(data, source=str(path))


def parse_index(data: bytes, *, source: str) -> dict:
    """An ``index.json`` read from a folder or a URL, checked."""
    try:
        index = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"gallery index is not JSON ({exc})", path=source) from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise DataError(f"not a cellbench gallery index (format must be {INDEX_FORMAT!r})", path=source)
    version = index.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise DataError(f"gallery index format_version must be a whole number, got {version!r:.40}", path=source)
    if version > INDEX_VERSION:
        raise DataError(f"gallery index format version {index.get('format_version')!r} is newer than cellbench "
                        f"{__version__} reads ({INDEX_VERSION}); upgrade cellbench", path=source)
    models = index.get("models")
    if not isinstance(models, list) or not all(isinstance(m, dict) and "name" in m and "archive" in m
                                               for m in models):
        raise DataError("gallery index 'models' must be a list of entries with name and archive", path=source)
    seen: set[str] = set()
    for k, entry in enumerate(models):
        problem = _entry_problem(entry)
        if problem is None and entry["name"] in seen:
            problem = "its name is used by an earlier entry"
        if problem is not None:
            raise DataError(f"gallery index model {k} ({entry.get('name')!r:.40}): {problem}", path=source)
        seen.add(entry["name"])
    return index


#: Index entry fields that are text (the listing prints them, the SegGal order sorts by them).
_TEXT_FIELDS = ("name", "method", "modality", "target", "channels", "dataset", "task")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entry_problem(entry: dict) -> str | None:
    """What is wrong with one ``models`` entry of an index, or None."""
    for key in _TEXT_FIELDS:
        if not isinstance(entry.get(key), str):
            return f"{key!r} must be text, got {entry.get(key)!r:.40}"
    archive = entry["archive"]
    if not isinstance(archive, dict):
        return f"'archive' must be an object with path, sha256 and size, got {archive!r:.40}"
    if not isinstance(archive.get("path"), str) or not archive["path"]:
        return f"archive 'path' must be text, got {archive.get('path')!r:.40}"
    if not isinstance(archive.get("sha256"), str) or not _SHA256.match(archive["sha256"]):
        return f"archive 'sha256' must be 64 lower-case hex digits, got {archive.get('sha256')!r:.70}"
    size = archive.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"archive 'size' must be a whole number of bytes, got {size!r:.40}"
    for key in ("ts_s", "overall"):
        if entry.get(key) is not None and not _is_number(entry[key]):
            return f"{key!r} must be a number or null, got {entry[key]!r:.40}"
    accuracy = entry.get("accuracy")
    if accuracy is not None and not (isinstance(accuracy, dict) and _is_number(accuracy.get("value"))):
        return f"'accuracy' must be null or an object with a numeric 'value', got {accuracy!r:.60}"
    return None


def write_index(gallery: Path, models: Sequence[dict]) -> dict:
    """Rewrite ``index.json`` and ``index.html`` of ``gallery`` (each atomically) for ``models``."""
    entries = ordered(with_overall(models), "seggal")
    index = {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "cellbench_version": __version__,
             "updated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "models": entries}
    atomic_write_bytes(gallery / INDEX_FILE, json.dumps(index, indent=2).encode())
    atomic_write_bytes(gallery / "index.html", index_html(entries).encode())
    return index


def publish(
    model_dir: str | Path,
    gallery: str | Path,
    *,
    name: str,
    run: str | Path | None = None,
    overwrite: bool = False,
    licence: str | None = None,
    citation: str | None = None,
    modality: str | None = None,
    target: str | None = None,
    channels: str | None = None,
    dataset: str | None = None,
    description: str = "",
    authors: Sequence[str] = (),
) -> dict:
    """Add the model in ``model_dir`` to gallery folder ``gallery`` as ``name``; returns its index entry.

    The model directory is loaded first (weights checked against ``model.json``),
    scores come from ``run`` (a run folder) when given. An existing ``name`` is
    refused unless ``overwrite``.
    """
    check_name(name)
    gallery = Path(gallery)
    if gallery.exists() and not gallery.is_dir():
        raise DataError("gallery path exists and is not a folder", path=gallery)
    card = model_card(model_dir, name=name, run=run, licence=licence, citation=citation, modality=modality,
                      target=target, channels=channels, dataset=dataset, description=description, authors=authors)
    gallery.mkdir(parents=True, exist_ok=True)
    with folder_lock(gallery, what="gallery folder", name=".cellbench-gallery.lock"):
        index = read_index_file(gallery)
        others = [m for m in index["models"] if m["name"] != name]
        if len(others) != len(index["models"]) and not overwrite:
            raise DataError(f"the gallery has a model named {name!r} already (use --overwrite to replace it)",
                            path=gallery)
        data = pack_bytes(model_dir)
        sha256 = bytes_digest(data)
        version = sha256[:16]  # a new folder per archive: the old one stays until the new index is in place
        rel = f"{MODELS_DIR}/{name}/{version}"
        archive = {"path": f"{rel}/{ARCHIVE_FILE}", "file": ARCHIVE_FILE, "sha256": sha256, "size": len(data)}
        card["archive"] = archive
        with staged_dir(gallery / rel, overwrite=True) as tmp:
            (tmp / ARCHIVE_FILE).write_bytes(data)
            (tmp / "card.json").write_text(json.dumps(card, indent=2))
            (tmp / "card.md").write_text(card_markdown(card))
            (tmp / "card.html").write_text(card_html(card))
        files = {"json": f"{rel}/card.json", "md": f"{rel}/card.md", "html": f"{rel}/card.html"}
        entry = index_entry(card, archive=archive, files=files)
        written = write_index(gallery, [*others, entry])
        for old in (gallery / MODELS_DIR / name).iterdir():
            if old.name != version and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
    return next(m for m in written["models"] if m["name"] == name)
