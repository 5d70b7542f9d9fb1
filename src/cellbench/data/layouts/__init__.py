"""Dataset layouts: each reader turns one on-disk layout into a :class:`~cellbench.data.Dataset`."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path

from cellbench.data.dataset import Dataset
from cellbench.data.layouts.coco import read_coco
from cellbench.data.layouts.glioma_c6 import read_glioma_c6
from cellbench.data.layouts.label_folders import read_cellpose, read_dsb, read_folder, read_neurips
from cellbench.data.layouts.tissuenet import read_tissuenet
from cellbench.errors import DataError

__all__ = [
    "LAYOUTS",
    "first_images",
    "read_cellpose",
    "read_coco",
    "read_dataset",
    "read_dsb",
    "read_folder",
    "read_glioma_c6",
    "read_neurips",
    "read_tissuenet",
    "read_with_options",
]

LAYOUTS: dict[str, Callable[..., Dataset]] = {
    "glioma-c6": read_glioma_c6,
    "coco": read_coco,
    "cellpose": read_cellpose,
    "neurips": read_neurips,
    "dsb": read_dsb,
    "folder": read_folder,
    "tissuenet": read_tissuenet,
}
"""Layout name -> reader. Every reader takes the path, ``split=``, ``confine_to=`` and its own keyword options."""


def read_dataset(
    path: str | Path,
    layout: str | None,
    *,
    split: str | None = None,
    task: str = "all",
    confine_to: str | Path | None = None,
    **options,
) -> Dataset:
    """Read ``path`` in ``layout``, pick ``split`` and ``task``; ``options`` go to the layout's reader.

    With ``layout`` None, ``path`` is the name of a registered dataset
    (:mod:`cellbench.data.registry`) downloaded with ``cellbench data download``.

    With ``confine_to`` (a folder), the reader reads nothing outside it: each file and folder it would
    list, test or open (annotation files, the images a COCO json names, label images) is checked first, and one
    that leads out by an absolute path, ``..`` or a symbolic link is a :class:`DataError` naming it
    (:mod:`cellbench.data.confine`). The GUI confines every dataset to its workspace.

    ``first_images=N`` (an option of every layout) keeps the first ``N`` images of the split in name order,
    after the reader's and the registered dataset's own selection: a subset that is the same on every
    machine (``cellbench reproduce --budget cpu`` shrinks splits with it).

    >>> read_dataset(".", "zarr")
    Traceback (most recent call last):
    ...
    cellbench.errors.DataError: .: unknown layout 'zarr'; layouts: glioma-c6, coco, cellpose, neurips, dsb, folder, tissuenet
    """
    first = options.pop("first_images", None)
    if first is not None:
        return first_images(read_dataset(path, layout, split=split, task=task, confine_to=confine_to, **options),
                            first)
    confined = {} if confine_to is None else {"confine_to": confine_to}
    if layout is None:  # a dataset registered by name (cellbench.data.registry), downloaded
        from cellbench.data.registered import read_registered

        return read_registered(str(path), split=split, task=task, **options, **confined)
    reader = LAYOUTS.get(layout)
    if reader is None:
        raise DataError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}", path=path)
    parameters = set(inspect.signature(reader).parameters)
    accepted = parameters - {"path", "split", "confine_to"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DataError(
            f"layout {layout} takes no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted)) or 'none'}",
            path=path,
        )
    if confined and "confine_to" not in parameters:  # a reader that cannot keep to the folder reads nothing
        raise DataError(f"layout {layout} cannot confine its reading to a folder (its reader takes no confine_to)",
                        path=path)
    return reader(Path(path), split=split, **options, **confined).with_task(task)


def first_images(dataset: Dataset, n: int) -> Dataset:
    """The dataset with its first ``n`` samples in name order (all of them when it has fewer).

    >>> from cellbench.data import Sample
    >>> from cellbench.instances import InstanceSet
    >>> ds = Dataset("folder", Path("."), tuple(Sample(k, InstanceSet((4, 4))) for k in "cab"), ())
    >>> [s.name for s in first_images(ds, 2).samples]
    ['a', 'b']
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"first_images must be an integer >= 1, got {n!r}", path=dataset.root)
    samples = sorted(dataset.samples, key=lambda s: s.name)[:n]
    return dataclasses.replace(dataset, samples=tuple(samples))


def read_with_options(
    path: str | Path,
    layout: str | None,
    *,
    split: str | None = None,
    task: str = "all",
    **candidates,
) -> Dataset:
    """:func:`read_dataset` with those of ``candidates`` (options not None) that the layout's reader takes.

    For the CLI, whose flags cover every reader's options. ``layout`` None
    reads the registered dataset named ``path`` with its split's reader.
    """
    if layout is None:
        from cellbench.data.registered import split_source
        from cellbench.data.registry import is_registered

        if not is_registered(str(path)):
            raise DataError("give --layout, or the name of a registered dataset (see `cellbench data list`)",
                            path=path)
        reader = LAYOUTS[split_source(str(path), split).layout]
    else:
        reader = LAYOUTS.get(layout)
    accepted = set(inspect.signature(reader).parameters) if reader is not None else set()
    options = {k: v for k, v in candidates.items() if k in accepted and v is not None}
    return read_dataset(path, layout, split=split, task=task, **options)
