"""TissueNet ``.npz`` files (``tissuenet_v1.1_{train,val,test}.npz``).

Each file holds ``X`` (N, H, W, 2): nuclear and whole-cell image channels, and
``y`` (N, H, W, 2): label images. DeepCell documents ``y`` as whole-cell
labels in channel 0 and nuclear labels in channel 1; ``label_channels`` says
otherwise if a file differs. Both become classes of ONE instance set (nuclei
lie inside cells, an overlap the instance model keeps); the tasks
``nuclei`` and ``whole-cell`` pick one. ``channels`` picks the image input:
``nuclear``, ``whole-cell`` or ``dual`` (both, H x W x 2), as the 18-methods
benchmark compares.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from cellbench.data.dataset import Dataset, Sample, Task
from cellbench.data.layouts.split_files import pick_split_file
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

__all__ = ["TASKS", "read_tissuenet"]

Channels = Literal["nuclear", "whole-cell", "dual"]
TASKS = {
    "nuclei": Task("nuclei", {"nucleus": "nucleus"}, "nuclear segmentation"),
    "whole-cell": Task("whole-cell", {"cell": "cell"}, "whole-cell segmentation"),
}
_CHANNEL_INDEX = {"nuclear": 0, "whole-cell": 1}


def read_tissuenet(
    path: str | Path,
    *,
    split: str | None = None,
    channels: Channels = "dual",
    label_channels: tuple[str, str] = ("cell", "nucleus"),
    progress: bool = False,
    confine_to: str | Path | None = None,
) -> Dataset:
    """Read a TissueNet split; see the module docstring for ``channels`` and ``label_channels``.

    With ``confine_to``, the ``.npz`` file must lie inside that folder (:mod:`cellbench.data.confine`).
    """
    if channels not in ("nuclear", "whole-cell", "dual"):
        raise ValueError(f"channels must be nuclear, whole-cell or dual, got {channels!r}")
    if sorted(label_channels) != ["cell", "nucleus"]:
        raise ValueError(f"label_channels must name 'cell' and 'nucleus' once each, got {label_channels}")
    npz = pick_split_file(Path(path), ("*.npz",), split, "TissueNet .npz",
                          confine_to=None if confine_to is None else Path(confine_to))
    try:
        with np.load(npz, allow_pickle=False) as data:
            if "X" not in data or "y" not in data:
                raise DataError(f"TissueNet file must hold arrays X and y, found {sorted(data.files)}", path=npz)
            X, y = data["X"], data["y"]
            extra = {}
            for k in data.files:
                if k in ("X", "y"):
                    continue
                try:
                    value = data[k]
                except ValueError:  # an object array (TissueNet v1.1's 'meta' table) needs pickle: left out
                    continue
                if value.shape[:1] == X.shape[:1]:
                    extra[k] = value
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"not a readable .npz file ({exc})", path=npz) from exc
    if X.ndim != 4 or y.ndim != 4 or X.shape[:3] != y.shape[:3] or X.shape[-1] != 2 or y.shape[-1] != 2:
        raise DataError(f"expected X and y of shape (N, H, W, 2), got X {X.shape} and y {y.shape}", path=npz)
    if y.dtype.kind == "f":
        if not np.array_equal(y, np.round(y)):
            raise DataError(f"labels y have float dtype {y.dtype} with non-integer values", path=npz)
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise DataError(f"labels y have non-integer dtype {y.dtype}", path=npz)
    classes = ("cell", "nucleus")
    images = X if channels == "dual" else X[..., _CHANNEL_INDEX[channels]]
    samples = []
    from tqdm import tqdm  # imported on use: importing tqdm reads package metadata (~25 ms)

    for n in tqdm(range(len(X)), desc="reading tissuenet", disable=not progress, unit="image"):
        parts = []
        for channel, cls in enumerate(label_channels):
            where = f"{npz}[y][{n}, ..., {channel}]"
            part = InstanceSet.from_label_image(y[n, ..., channel], classes=classes, class_id=classes.index(cls), source=where)
            parts.extend(part.instances)
        meta = {k: (v[n].item() if v[n].ndim == 0 else v[n].tolist()) for k, v in extra.items()}
        samples.append(
            Sample(
                name=f"{npz.stem}_{n:05d}",
                instances=InstanceSet(shape=y.shape[1:3], instances=tuple(parts), classes=classes),
                split=split,
                meta=meta,
                array=images[n],
            )
        )
    return Dataset(
        layout="tissuenet", root=npz, samples=tuple(samples), classes=classes, split=split,
        tasks=TASKS, meta={"channels": channels, "label_channels": list(label_channels)},
    )
