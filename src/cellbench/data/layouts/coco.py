"""COCO instance annotations (polygons and RLE): LIVECell, Glioma C6 and others.

One annotation is one instance, even when its segmentation has several polygon
parts. Instances keep the order of the annotation list (the priority order of
the ``priority`` flatten policy). Crowd annotations (``iscrowd: 1``) are
regions, not instances: they are skipped and counted in ``Dataset.meta``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from cellbench.data.confine import confine, is_inside
from cellbench.data.dataset import Dataset, Sample
from cellbench.data.images import IMAGE_SUFFIXES, image_shape, is_image_file
from cellbench.data.layouts.split_files import pick_split_file
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, polygon_problem, rasterize_polygon, rle_to_instance

__all__ = ["InvalidPolygons", "check_annotations", "load_coco_json", "parse_coco", "read_coco"]

log = logging.getLogger(__name__)

InvalidPolygons = Literal["raise", "skip", "keep"]
"""What to do with a polygon outside the image or crossing itself: raise
(default), skip the annotation (counted in meta), or keep it as drawn."""


def load_coco_json(path: Path) -> dict:
    """Parse a COCO json file and check its top-level structure."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DataError("annotation file not found", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise DataError("COCO json must be an object with images, annotations, categories", path=path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"COCO json has no {key!r} list", path=path)
    if isinstance(data["annotations"], dict):  # LIVECell keys annotations by id
        data["annotations"] = list(data["annotations"].values())
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise DataError(f"COCO {key!r} must be a list, got {type(data[key]).__name__}", path=path)
    _check_entries(data["images"], "image", ("id", "file_name", "width", "height"), path)
    _check_entries(data["categories"], "category", ("id", "name"), path)
    check_annotations(data["annotations"], path)
    return data


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _check_entries(entries: list, what: str, keys: Sequence[str], path: Path) -> None:
    """Each entry an object with ``keys``, its ``id`` an integer or a string, no id twice."""
    seen: dict = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{what} entry {k} must be an object, got {entry!r:.80}", path=path)
        missing = [key for key in keys if key not in entry]
        if missing:
            need = f"{', '.join(keys[:-1])} or {keys[-1]}"
            raise DataError(f"{what} entry {k} lacks {need} (no {', '.join(missing)}): {entry!r:.120}", path=path)
        _check_id(entry["id"], f"{what} entry {k}", "id", seen, path)


def _check_id(value, owner: str, key: str, seen: dict | None, path: Path) -> None:
    if not _is_id(value):
        raise DataError(f"{owner}: {key} must be an integer or a string, got {value!r:.80}", path=path)
    if seen is not None:
        if value in seen:
            raise DataError(f"{owner}: duplicate {key} {value!r} (also {seen[value]})", path=path)
        seen[value] = owner


def check_annotations(annotations: list, path: Path) -> None:
    """Each annotation an object whose image and category ids are integers or strings, whose own id (when
    given) no other annotation has, and whose score (when given) is a finite number."""
    seen: dict = {}
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DataError(f"annotation entry {k} must be an object, got {ann!r:.80}", path=path)
        for key in ("image_id", "category_id"):
            if key not in ann:
                raise DataError(f"annotation entry {k} has no {key}", path=path)
            _check_id(ann[key], f"annotation entry {k}", key, None, path)
        if ann.get("id") is not None:
            _check_id(ann["id"], f"annotation entry {k}", "id", seen, path)
        score = ann.get("score")
        if score is not None and not (isinstance(score, (int, float)) and not isinstance(score, bool)
                                      and math.isfinite(score)):
            raise DataError(f"annotation entry {k}: score must be a finite number, got {score!r:.80}", path=path)


def _image_finder(json_path: Path, image_dirs: Sequence[Path],
                  confine_to: Path | None = None) -> Callable[[str], Path | None]:
    """Look for an image as written, then under ``images/`` beside the json, then anywhere below.

    With ``confine_to``, the folders looked in that lie outside it are left out, and a name that leads out of it
    from a folder looked in (absolute, ``..``, a symbolic link) is an error before anything outside is tested.
    """
    roots = [*image_dirs, json_path.parent, json_path.parent / "images", json_path.parent.parent / "images"]
    if confine_to is not None:
        roots = [root for root in roots if is_inside(root, confine_to)]
    index: dict[str, Path] | None = None

    def find(file_name: str) -> Path | None:
        nonlocal index
        what = f"image {file_name!r} named in {json_path.name}"
        for root in roots:
            candidate = confine(root / file_name, confine_to, what)
            if candidate.is_file():
                return candidate
        if index is None:  # nested layouts (LIVECell): index once, by file name
            index = {}
            for root in roots:
                if root.is_dir():
                    for p in sorted(root.rglob("*")):
                        if _listed(p, confine_to):
                            index.setdefault(p.name, p)
        found = index.get(Path(file_name).name)
        return None if found is None else confine(found, confine_to, what)

    return find


def _listed(path: Path, confine_to: Path | None) -> bool:
    """An image file, or (a link) leading out of ``confine_to`` with an image suffix: refused if it is picked."""
    if confine_to is not None and not is_inside(path, confine_to):  # not tested: its target lies outside
        return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    return is_image_file(path)


def parse_coco(
    data: Mapping,
    *,
    json_path: Path,
    category_class: Mapping[int, str],
    classes: Sequence[str],
    image_dirs: Sequence[Path] = (),
    split: str | None = None,
    invalid: InvalidPolygons = "raise",
    check_images: bool = True,
    confine_to: Path | None = None,
) -> tuple[list[Sample], dict]:
    """Samples of a parsed COCO json; ``category_class`` maps category id to class name.

    Annotations whose category is not in ``category_class`` are left out.
    Returns the samples and counts of what was skipped. With ``confine_to``, an image
    that lies outside that folder is an error before its file is tested or opened.
    """
    class_index = {name: k for k, name in enumerate(classes)}
    find = _image_finder(json_path, image_dirs, confine_to)
    images = {}
    for img in data["images"]:
        try:
            iid, file_name, h, w = img["id"], img["file_name"], int(img["height"]), int(img["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"image entry {img!r} lacks id, file_name, width or height ({exc})", path=json_path)
        path = find(file_name) if check_images else None
        if check_images:
            if path is None:
                raise DataError(
                    f"image id {iid} ({file_name!r}) not found beside the json, in images/ or in {list(map(str, image_dirs))}",
                    path=json_path,
                )
            actual = image_shape(path)
            if actual != (h, w):
                raise DataError(f"image is {actual[0]} x {actual[1]} (h x w) but {json_path.name} says {h} x {w}", path=path)
        images[iid] = (file_name, path, (h, w), [])
    known_categories = {c.get("id") for c in data["categories"]}
    skipped = {"crowd": 0, "invalid_polygon": 0, "other_category": 0}
    for ann in data["annotations"]:
        aid = ann.get("id")
        iid = ann.get("image_id")
        if iid not in images:
            raise DataError(f"annotation {aid} points at image_id {iid!r}, which is not in 'images'", path=json_path)
        if ann.get("iscrowd", 0):
            skipped["crowd"] += 1
            continue
        cid = ann.get("category_id")
        if cid not in known_categories:
            raise DataError(f"annotation {aid} has category_id {cid!r}, which is not in 'categories'", path=json_path)
        name = category_class.get(cid)
        if name is None:
            skipped["other_category"] += 1
            continue
        file_name, _, shape, found = images[iid]
        where = f"annotation {aid} (image {file_name})"
        inst = _instance(ann, shape, where, json_path, invalid, class_id=class_index[name])
        if inst is None:
            skipped["invalid_polygon"] += 1
        else:
            found.append(inst)
    samples = [
        Sample(
            name=Path(file_name).stem,
            instances=InstanceSet(shape=shape, instances=tuple(found), classes=tuple(classes)),
            image_path=path,
            split=split,
            meta={"image_id": iid, "file_name": file_name},
        )
        for iid, (file_name, path, shape, found) in images.items()
    ]
    return samples, skipped


def _instance(ann: Mapping, shape, where: str, json_path: Path, invalid: InvalidPolygons, *, class_id: int):
    seg = ann.get("segmentation")
    fields = {"class_id": class_id, "score": ann.get("score"), "source_id": ann.get("id")}
    if isinstance(seg, dict):
        if not isinstance(seg.get("size"), list) or seg["size"] != list(shape):
            raise DataError(f"{where}: RLE size {seg.get('size')} differs from image size {list(shape)}", path=json_path)
        try:
            return rle_to_instance(seg, **fields)
        except DataError as exc:  # malformed counts
            raise DataError(f"{where}: {exc.problem}", path=json_path) from None
        except ValueError:
            return _refuse(f"{where}: RLE covers no pixel", json_path, invalid)
    if not isinstance(seg, list) or not seg:
        raise DataError(f"{where}: segmentation is neither polygons nor RLE", path=json_path)
    parts = []
    for flat in seg:
        try:
            part = np.asarray(flat, dtype=np.float64)
        except (TypeError, ValueError):
            part = None
        if not isinstance(flat, list) or part is None or part.ndim != 1 or len(flat) % 2:
            raise DataError(f"{where}: polygon must be a flat list of x, y pairs of numbers, got {flat!r:.80}",
                            path=json_path)
        part = part.reshape(-1, 2)
        problem = polygon_problem(part, shape)
        if problem is not None:
            _refuse(f"{where}: {problem}", json_path, invalid)
            drawable = np.isfinite(part).all() and len(np.unique(part, axis=0)) >= 3
            if invalid == "skip" or not drawable:
                return None
        parts.append(part)
    try:
        return rasterize_polygon(parts, shape, **fields)
    except ValueError:
        return _refuse(f"{where}: polygon covers no pixel", json_path, invalid)


def _refuse(message: str, json_path: Path, invalid: InvalidPolygons) -> None:
    if invalid == "raise":
        raise DataError(message + " (use invalid='skip' or 'keep' to read past it)", path=json_path)
    log.warning("%s: %s (%s)", json_path, message, "skipped" if invalid == "skip" else "kept as drawn")
    return None


def read_coco(
    path: str | Path,
    *,
    split: str | None = None,
    image_dir: str | Path | None = None,
    invalid: InvalidPolygons = "raise",
    confine_to: str | Path | None = None,
) -> Dataset:
    """Read a COCO json (or a folder holding one; ``split`` picks among several).

    Every category becomes a class, named as in the file. With ``confine_to``, every file read (the json,
    the images it names, ``image_dir``) must lie inside that folder (:mod:`cellbench.data.confine`): the
    json may then name no image outside it, by an absolute path, ``..`` or a symbolic link.
    """
    path = Path(path)
    confine_to = None if confine_to is None else Path(confine_to)
    json_path = pick_split_file(path, ("*.json", "annotations/*.json"), split, "COCO json", confine_to=confine_to)
    if image_dir:
        confine(image_dir, confine_to, "image folder")
    data = load_coco_json(json_path)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    names = [str(c["name"]) for c in cats]
    if len(set(names)) != len(names):  # keep classes distinct when names repeat
        names = [f"{c['name']}#{c['id']}" for c in cats]
    samples, skipped = parse_coco(
        data,
        json_path=json_path,
        category_class={c["id"]: n for c, n in zip(cats, names)},
        classes=names,
        image_dirs=[Path(image_dir)] if image_dir else [],
        split=split,
        invalid=invalid,
        confine_to=confine_to,
    )
    return Dataset(
        layout="coco", root=json_path, samples=tuple(samples), classes=tuple(names), split=split,
        meta={"skipped": skipped},
    )
