"""Download and read the datasets of :mod:`cellbench.data.registry` by name.

A dataset's files go to ``<cache>/<name>/`` (checked by
:mod:`cellbench.remote`); its unpacked data to ``<cache>/<name>/data``,
built in a temporary folder and renamed into place only when every file
is in, then marked complete (``data.complete``). A dataset ``based_on``
another shares that one's download. Archives are unpacked within
:class:`~cellbench.remote.UnpackLimits` (each archive on its own), and a
file trusted on first use is recorded only once the data is in place.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from cellbench.data.dataset import Dataset
from cellbench.data.registry import DatasetFile, RegisteredDataset, SplitSource, get_dataset
from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, staged_dir
from cellbench.remote import (
    DEFAULT_LIMITS,
    Fetched,
    UnpackLimits,
    adding,
    check_zip,
    default_cache_dir,
    fetching,
    unpack_zip,
)

__all__ = ["data_folder", "download_registered", "read_registered", "split_source"]

Opener = Callable[[str], object]


def _base(entry: RegisteredDataset) -> RegisteredDataset:
    return get_dataset(entry.based_on) if entry.based_on else entry


def data_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where dataset ``name`` lies once downloaded (whether or not it is there)."""
    return Path(cache_dir or default_cache_dir()) / _base(get_dataset(name)).name / "data"


def _complete(data: Path) -> bool:
    return (data.parent / "data.complete").is_file() and data.is_dir()


def _fetching(entry: RegisteredDataset, f: DatasetFile, folder: Path, opener: Opener | None, progress: bool,
              allow_unverified: bool) -> Fetched:
    """The file fetched into ``folder``; trust on first use is recorded when the ``with`` block succeeds."""
    if f.record_url is None:
        return fetching(f.remote, folder, progress=progress)
    from cellbench.data.download import RemoteArchive, fetching_archive  # Zenodo record: the md5 it publishes

    remote = RemoteArchive(name=entry.name, url=f.remote.url, filename=f.remote.file_name, record_url=f.record_url,
                           md5=f.remote.md5, sha256=f.remote.sha256)
    return fetching_archive(remote, folder.parent, opener=opener, progress=progress,
                            allow_unverified=allow_unverified)


def download_registered(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    archives: Sequence[str | Path] = (),
    opener: Opener | None = None,
    progress: bool = True,
    limits: UnpackLimits = DEFAULT_LIMITS,
    allow_unverified: bool = False,
) -> Path:
    """Download (or take ``archives`` fetched by hand), verify and unpack dataset ``name``; its data folder.

    A second call finds the data complete and downloads nothing (unless
    ``archives`` are given, which replace the files of the same names).
    ``limits`` caps what each archive may unpack to (a :class:`DataError`
    past it, and nothing unpacked is kept); ``allow_unverified`` takes a
    file whose published checksum cannot be read (its record is out of
    reach), trusting it on first use.

    A file nothing verifies (no published checksum, none recorded) is
    recorded as trusted only after the data is unpacked; a file that cannot
    be unpacked is removed from the cache instead.
    """
    entry = _base(get_dataset(name))
    folder = Path(cache_dir or default_cache_dir()) / entry.name
    data = folder / "data"
    if _complete(data) and not archives:
        return data
    expected = {f.remote.file_name: f for f in entry.files}
    given: dict[str, Path] = {}
    for a in map(Path, archives):
        if a.name not in expected:
            raise DataError(f"dataset {entry.name} has no file {a.name!r}; its files: {', '.join(expected)}", path=a)
        given[a.name] = a
    # every file checked for what can be checked before the cache takes any of them (and perhaps trusts it)
    for f in entry.files:
        name = f.remote.file_name
        if name in given and f.unpack:
            check_zip(given[name], limits=limits)
        elif name not in given and entry.manual and not (folder / name).is_file():
            raise DataError(f"{name} is not in the cache and cannot be downloaded for you. {entry.manual}")
    # every file in the cache first (a failed download leaves the others there, unrecorded, for the next run)
    fetched = [adding(given[f.remote.file_name], f.remote, folder, progress=progress) if f.remote.file_name in given
               else _fetching(entry, f, folder, opener, progress, allow_unverified) for f in entry.files]
    (folder / "data.complete").unlink(missing_ok=True)
    _unpack_all(entry, fetched, data, limits)
    record = {"dataset": entry.name, "files": [str(f.path) for f in fetched]}
    atomic_write_bytes(folder / "data.complete", json.dumps(record, indent=1).encode())
    return data


def _unpack_all(entry: RegisteredDataset, fetched: Sequence[Fetched], data: Path, limits: UnpackLimits) -> None:
    """The dataset's files unpacked (or copied) into ``data``, staged and renamed into place.

    Each file nothing verified is recorded as trusted once it has unpacked, or removed if it does not.
    """
    with staged_dir(data, overwrite=True) as tmp:
        for k, (f, file) in enumerate(zip(entry.files, fetched)):
            with file as path:
                target = tmp / f.dest
                target.mkdir(parents=True, exist_ok=True)
                if not f.unpack:
                    shutil.copyfile(path, target / f.remote.file_name)
                    continue
                part = unpack_zip(path, tmp / f".unpack-{k}", limits=limits)
                for child in sorted(part.iterdir()):
                    if (target / child.name).exists():
                        raise DataError(f"{child.name} is in two of the dataset's archives", path=path)
                    child.rename(target / child.name)
                part.rmdir()


def split_source(name: str, split: str | None) -> SplitSource:
    """The split's source; ``split`` may be None only when the dataset has one split."""
    entry = get_dataset(name)
    if split is None:
        if len(entry.splits) != 1:
            raise DataError(f"dataset {name} has splits {', '.join(entry.splits)}: choose one (--split)")
        split = next(iter(entry.splits))
    try:
        return entry.splits[split]
    except KeyError:
        raise DataError(f"dataset {name} has no split {split!r}; splits: {', '.join(entry.splits)}") from None


def _resolve(data: Path, relative: str) -> Path:
    """``data/relative``, or through the one folder an archive wrapped everything in."""
    direct = data / relative
    if direct.exists():
        return direct
    children = [c for c in data.iterdir() if not c.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and (children[0] / relative).exists():
        return children[0] / relative
    raise DataError(f"expected {relative or 'the dataset'} in the downloaded data; is the download complete?", path=data)


def read_registered(
    name: str,
    *,
    split: str | None = None,
    task: str = "all",
    cache_dir: str | Path | None = None,
    **options,
) -> Dataset:
    """Read a downloaded registered dataset: its split's layout and options, then its selection."""
    from cellbench.data.layouts import read_dataset

    source = split_source(name, split)
    data = data_folder(name, cache_dir)
    if not _complete(data):
        state = "did not finish downloading (no data.complete beside it)" if data.is_dir() else "is not downloaded"
        raise DataError(f"dataset {name} {state}; run `cellbench data download {name}`", path=data)
    reader_options = {k: (str(_resolve(data, v)) if k.endswith("_dir") else v) for k, v in source.options.items()}
    ds = read_dataset(_resolve(data, source.path), source.layout, split=source.reader_split, task=task,
                      **{**reader_options, **options})
    samples = sorted(ds.samples, key=lambda s: s.name)
    if source.name_prefix is not None:
        samples = [s for s in samples if s.name.startswith(source.name_prefix)]
    if source.select is not None:
        missing = [i for i in source.select if i >= len(samples)]
        if missing:
            raise DataError(f"split {split} has {len(samples)} images, fewer than the subset needs "
                            f"(index {missing[0]})", path=data)
        samples = [samples[i] for i in source.select]
    if not samples:
        raise DataError(f"no images in split {split} of dataset {name}", path=data)
    return dataclasses.replace(ds, samples=tuple(samples), split=split)
