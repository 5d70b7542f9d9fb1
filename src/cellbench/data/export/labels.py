"""Label TIFF: a flattened label image with the flatten policy in its metadata.

:func:`write_label_tiff` writes a label image held in memory;
:func:`write_instance_labels` flattens instances window by window into a tiled
TIFF, so a whole slide's label image (1.6 GB of 32-bit ids at 20,000 x 20,000
px) is never one array.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

from cellbench.instances import FlatLabels, FlattenPolicy, InstanceSet
from cellbench.instances.flatten import WindowFlattener, flatten_record, label_dtype

__all__ = ["LABEL_TILE", "read_label_tiff_metadata", "write_instance_labels", "write_label_tiff"]

#: Side of the TIFF tiles :func:`write_instance_labels` writes (and of the windows it flattens).
LABEL_TILE = 512


def write_label_tiff(path: str | Path, flat: FlatLabels, *, extra: dict | None = None) -> None:
    """Write ``flat.labels`` (zlib-compressed) with the policy record as JSON ImageDescription."""
    description = json.dumps({"cellbench": {**flat.metadata(), **(extra or {})}})
    tifffile.imwrite(path, flat.labels, compression="zlib", description=description, metadata=None)


def write_instance_labels(path: str | Path, instances: InstanceSet, policy: FlattenPolicy, *,
                          extra: dict | None = None, tile: int = LABEL_TILE) -> tuple[int, ...]:
    """Flatten ``instances`` with ``policy`` into a tiled, zlib-compressed label TIFF, ``tile`` px at a time, with
    the record of :func:`write_label_tiff`; the instances the policy left with no pixel.

    The labels equal :func:`~cellbench.instances.flatten`'s; memory is one tile
    and the instances. The record's ``lost_instances`` is known once the last
    tile is written, so the description is written again then.
    """
    h, w = instances.shape
    windows = [(y, x, min(h, y + tile), min(w, x + tile)) for y in range(0, h, tile) for x in range(0, w, tile)]
    flattener = WindowFlattener(instances, policy)
    tiles = (flattener.window(window) for window in windows)
    dtype = label_dtype(len(instances))
    record = {"cellbench": {**flatten_record(policy.name, policy.params(), ()), **(extra or {})}}
    tifffile.imwrite(path, tiles, shape=(h, w), dtype=dtype, tile=(tile, tile), compression="zlib",
                     description=json.dumps(record), metadata=None,
                     bigtiff=h * w * np.dtype(dtype).itemsize > 2**31)
    record["cellbench"]["lost_instances"] = list(flattener.lost)
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["ImageDescription"].overwrite(json.dumps(record))
    return flattener.lost


def read_label_tiff_metadata(path: str | Path) -> dict | None:
    """The cellbench record written by :func:`write_label_tiff`, or None for other TIFFs."""
    with tifffile.TiffFile(path) as tif:
        text = tif.pages[0].description
    try:
        return json.loads(text)["cellbench"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
