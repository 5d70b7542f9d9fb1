"""Read ground truth and predictions for evaluation: label-image folders, COCO files, any layout.

Images are paired by name: the file stem, with a trailing ``_masks``,
``_cp_masks``, ``_mask``, ``_labels``, ``_label`` or ``_pred`` removed, so
``x.tif``, ``x_masks.png`` and ``x_label.tiff`` all pair as ``x``. A COCO file
may be a full COCO dataset (as ``cellbench predict`` writes) or a bare results
list (then the ground truth must be COCO too, for image ids and sizes).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from cellbench.data.images import image_files, is_tiff, missing_path, read_label_image
from cellbench.data.label_file import LabelFile
from cellbench.data.layouts.coco import _instance, check_annotations, load_coco_json
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

__all__ = ["Loader", "label_files", "pair_name", "read_segmentations", "segmentation_file", "segmentation_loaders"]

#: Reads one segmentation when called.
Loader = Callable[[], "np.ndarray | InstanceSet | LabelFile"]

_SUFFIXES = ("_cp_masks", "_masks", "_mask", "_labels", "_label", "_pred")


def pair_name(stem: str) -> str:
    """The name an image pairs under.

    >>> pair_name("img_01_masks"), pair_name("img_01_cp_masks"), pair_name("img_01")
    ('img_01', 'img_01', 'img_01')
    """
    for suffix in _SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def label_files(folder: str | Path) -> dict[str, Path]:
    """The label image files of ``folder`` by the name they pair under."""
    folder = Path(folder)
    files = image_files(folder)
    if not files:
        raise DataError("no label images (.tif, .tiff, .png) in folder", path=folder)
    seen: dict[str, Path] = {}
    for f in files:
        name = pair_name(f.stem)
        if name in seen:
            raise DataError(f"two files pair as {name!r}: {seen[name].name} and {f.name}", path=folder)
        seen[name] = f
    return seen


def segmentation_file(path: str | Path, name: str) -> Path:
    """The file that segmentation ``name`` of ``read_segmentations(path)`` came from: its label image, or the json."""
    path = Path(path)
    return label_files(path).get(name, path) if path.is_dir() else path


def _coco_file(path: Path, gt_coco: Mapping | None) -> dict[str, InstanceSet]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", path=path) from None
    if isinstance(data, list):  # a results list: image ids and sizes come from the GT json
        if gt_coco is None:
            raise DataError("a COCO results list needs COCO ground truth (--gt FILE.json) for image ids and sizes", path=path)
        images, categories = gt_coco["images"], gt_coco["categories"]
        annotations = data
        check_annotations(annotations, path)
    else:
        data = load_coco_json(path)  # checks the structure
        images, categories, annotations = data["images"], data["categories"], data["annotations"]
    cats = sorted(categories, key=lambda c: c["id"])
    classes = tuple(str(c["name"]) for c in cats)
    class_of = {c["id"]: k for k, c in enumerate(cats)}
    by_id: dict = {}
    for img in images:
        try:
            by_id[img["id"]] = (pair_name(Path(img["file_name"]).stem), (int(img["height"]), int(img["width"])), [])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"image entry {img!r} lacks id, file_name, width or height ({exc})", path=path) from None
    for ann in annotations:
        if ann.get("iscrowd", 0):
            continue
        iid, cid = ann.get("image_id"), ann.get("category_id")
        if iid not in by_id:
            raise DataError(f"annotation for image_id {iid!r}, which is not among the images", path=path)
        if cid not in class_of:
            raise DataError(f"annotation with category_id {cid!r}, which is not among the categories", path=path)
        name, shape, found = by_id[iid]
        inst = _instance(ann, shape, f"annotation {ann.get('id')} (image {name})", path, "raise", class_id=class_of[cid])
        if inst is not None:
            found.append(inst)
    out = {}
    for name, shape, found in by_id.values():
        if name in out:
            raise DataError(f"two images pair as {name!r}", path=path)
        out[name] = InstanceSet(shape=shape, instances=tuple(found), classes=classes)
    return out


def read_segmentations(path: str | Path, *, gt_coco: Mapping | None = None, max_pixels: int | None = None
                       ) -> dict[str, np.ndarray | InstanceSet]:
    """Segmentations by pairing name from a folder of label images or a COCO json file (``max_pixels``: see
    :func:`~cellbench.data.images.read_image`)."""
    return {name: load() for name, load in segmentation_loaders(path, gt_coco=gt_coco, max_pixels=max_pixels).items()}


def _label_loader(path: Path, max_pixels: int | None, banded: bool) -> Loader:
    if banded and is_tiff(path):
        return functools.partial(LabelFile.open, path)
    return functools.partial(read_label_image, path, max_pixels=max_pixels)


def _loaded(segmentation: np.ndarray | InstanceSet) -> Loader:
    return lambda: segmentation


def segmentation_loaders(path: str | Path, *, gt_coco: Mapping | None = None, max_pixels: int | None = None,
                         banded: bool = False) -> dict[str, Loader]:
    """As :func:`read_segmentations`, but a label image is read only when its loader is called.

    A caller that scores one pair at a time (``cellbench evaluate``) then holds
    one pair of label images in memory, not the whole folder; with ``banded``
    a TIFF loader opens a :class:`~cellbench.data.label_file.LabelFile` (its
    header), whose pixels are read a band of rows at a time when scored. A
    COCO file is one json, so its segmentations are read at once.
    """
    path = Path(path)
    if path.is_dir():
        return {name: _label_loader(f, max_pixels, banded) for name, f in label_files(path).items()}
    if path.is_file() and path.suffix.lower() == ".json":
        return {name: _loaded(s) for name, s in _coco_file(path, gt_coco).items()}
    if not path.exists():
        raise missing_path(path)
    raise DataError("expected a folder of label images or a COCO .json file", path=path)
