"""Download and read the datasets of :mod:`cellbench.data.registry` by name.

A dataset's files go to ``<cache>/<name>/`` (checked by
:mod:`cellbench.remote`); its unpacked data to ``<cache>/<name>/data``,
built in a temporary folder and renamed into place only when every file
is in, then marked complete (``data.complete``). A dataset ``based_on``
another shares that one's download.
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
from cellbench.remote import add_file, check_zip, default_cache_dir, fetch_file, unpack_zip

__all__ = ["data_folder", "download_registered", "read_registered", "split_source"]

Opener = Callable[[str], object]


def _base(entry: RegisteredDataset) -> RegisteredDataset:
    return get_dataset(entry.based_on) if entry.based_on else entry


def data_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where dataset ``name`` lies once downloaded (whether or not it is there)."""
    return Path(cache_dir or default_cache_dir()) / _base(get_dataset(name)).name / "data"


def _complete(data: Path) -> bool:
    return (data.parent / "data.complete").is_file() and data.is_dir()


def _fetch(entry: RegisteredDataset, f: DatasetFile, folder: Path, opener: Opener | None, progress: bool) -> Path:
    if f.record_url is None:
        return fetch_file(f.remote, folder, progress=progress)
    from cellbench.data.download import RemoteArchive, fetch_archive  # Zenodo record: the md5 it publishes

    remote = RemoteArchive(name=entry.name, url=f.remote.url, filename=f.remote.file_name, record_url=f.record_url)
    return fetch_archive(remote, folder.parent, opener=opener, progress=progress)


def download_registered(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    archives: Sequence[str | Path] = (),
    opener: Opener | None = None,
    progress: bool = True,
) -> Path:
    """Download (or take ``archives`` fetched by hand), verify and unpack dataset ``name``; its data folder.

    A second call finds the data complete and downloads nothing (unless
    ``archives`` are given, which replace the files of the same names).
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
            check_zip(given[name])
        elif name not in given and entry.manual and not (folder / name).is_file():
            raise DataError(f"{name} is not in the cache and cannot be downloaded for you. {entry.manual}")
    paths = []
    for f in entry.files:
        if f.remote.file_name in given:
            paths.append(add_file(given[f.remote.file_name], f.remote, folder, progress=progress))
        else:
            paths.append(_fetch(entry, f, folder, opener, progress))
    (folder / "data.complete").unlink(missing_ok=True)
    with staged_dir(data, overwrite=True) as tmp:
        for k, (f, path) in enumerate(zip(entry.files, paths)):
            target = tmp / f.dest
            target.mkdir(parents=True, exist_ok=True)
            if not f.unpack:
                shutil.copyfile(path, target / f.remote.file_name)
                continue
            part = unpack_zip(path, tmp / f".unpack-{k}")
            for child in sorted(part.iterdir()):
                if (target / child.name).exists():
                    raise DataError(f"{child.name} is in two of the dataset's archives", path=path)
                child.rename(target / child.name)
            part.rmdir()
    record = {"dataset": entry.name, "files": [str(p) for p in paths]}
    atomic_write_bytes(folder / "data.complete", json.dumps(record, indent=1).encode())
    return data


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
