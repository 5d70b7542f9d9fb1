"""Label TIFF: a flattened label image with the flatten policy in its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import tifffile

from cellbench.instances import FlatLabels

__all__ = ["read_label_tiff_metadata", "write_label_tiff"]


def write_label_tiff(path: str | Path, flat: FlatLabels, *, extra: dict | None = None) -> None:
    """Write ``flat.labels`` (zlib-compressed) with the policy record as JSON ImageDescription."""
    description = json.dumps({"cellbench": {**flat.metadata(), **(extra or {})}})
    tifffile.imwrite(path, flat.labels, compression="zlib", description=description, metadata=None)


def read_label_tiff_metadata(path: str | Path) -> dict | None:
    """The cellbench record written by :func:`write_label_tiff`, or None for other TIFFs."""
    with tifffile.TiffFile(path) as tif:
        text = tif.pages[0].description
    try:
        return json.loads(text)["cellbench"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
