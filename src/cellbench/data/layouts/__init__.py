"""Dataset layouts: each reader turns one on-disk layout into a :class:`~cellbench.data.Dataset`."""

from __future__ import annotations

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
    "read_cellpose",
    "read_coco",
    "read_dataset",
    "read_dsb",
    "read_folder",
    "read_glioma_c6",
    "read_neurips",
    "read_tissuenet",
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
"""Layout name -> reader. Every reader takes the path, ``split=`` and its own keyword options."""


def read_dataset(
    path: str | Path,
    layout: str,
    *,
    split: str | None = None,
    task: str = "all",
    **options,
) -> Dataset:
    """Read ``path`` in ``layout``, pick ``split`` and ``task``; ``options`` go to the layout's reader.

    >>> read_dataset(".", "zarr")
    Traceback (most recent call last):
    ...
    cellbench.errors.DataError: .: unknown layout 'zarr'; layouts: glioma-c6, coco, cellpose, neurips, dsb, folder, tissuenet
    """
    reader = LAYOUTS.get(layout)
    if reader is None:
        raise DataError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}", path=path)
    accepted = set(inspect.signature(reader).parameters) - {"path", "split"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DataError(
            f"layout {layout} takes no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted)) or 'none'}",
            path=path,
        )
    return reader(Path(path), split=split, **options).with_task(task)
