"""Glioma C6 (Zenodo record 15083188), in the layout of its ``dataset.zip``::

    dataset/spec/{train,valid,test}/images/*.tif   + one COCO json per split
    dataset/gen/images/*.tif                       + one COCO json

The json is looked for inside the split folder (``anno_<split>.json`` first,
else the only ``*.json`` there), then beside it (``spec/anno_<split>.json``).
Annotations are COCO polygons that overlap; overlaps are kept.

Categories are matched tolerantly because their exact names are not
published: supercategory ``cell_part`` (or a name like "soma") is soma; other
categories whose name reads as type A / type B (``Cell type A``, ``cell_a``,
``typeA``, ``A``...) are cell type A / B; a plain ``cell`` category (the gen
part is labelled without types) is an untyped cell. Anything else with
annotations stops the reading with the list of categories found.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from cellbench.data.confine import confine
from cellbench.data.dataset import Dataset, Task
from cellbench.data.layouts.coco import InvalidPolygons, load_coco_json, parse_coco
from cellbench.errors import DataError

__all__ = ["CLASSES", "SPLITS", "TASKS", "classify_category", "read_glioma_c6"]

log = logging.getLogger(__name__)

SPLITS = {"train": "spec/train", "valid": "spec/valid", "test": "spec/test", "gen": "gen"}
CLASSES = ("cell_type_a", "cell_type_b", "cell", "soma")
TASKS = {
    "cells": Task("cells", {"cell_type_a": "cell", "cell_type_b": "cell", "cell": "cell"}, "cells of both types"),
    "soma": Task("soma", {"soma": "soma"}, "somata"),
    "type-a": Task("type-a", {"cell_type_a": "cell_type_a"}, "cells of type A"),
    "type-b": Task("type-b", {"cell_type_b": "cell_type_b"}, "cells of type B"),
    # two classes in one set: methods that classify train one model, the others one model per class
    "types": Task("types", {"cell_type_a": "cell_type_a", "cell_type_b": "cell_type_b"},
                  "cells of type A and type B, two classes"),
}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def classify_category(category: dict) -> str | None:
    """The cellbench class of a Glioma C6 category, or None when it is not recognised.

    >>> classify_category({"name": "Cell type A", "supercategory": "cell"})
    'cell_type_a'
    >>> classify_category({"name": "whatever", "supercategory": "cell_part"})
    'soma'
    """
    name, sup = _norm(category.get("name", "")), _norm(category.get("supercategory", ""))
    if sup == "cellpart" or name in ("soma", "somata", "cellbody", "cellpart"):
        return "soma"
    for letter in ("a", "b"):
        if re.fullmatch(rf"(cells?)?(type|class)?{letter}(cells?)?", name) or name in (f"{letter}type",):
            return f"cell_type_{letter}"
    if name in ("cell", "cells", "gliomacell", "c6cell", "c6"):
        return "cell"
    return None


def _root(path: Path, confine_to: Path | None) -> Path:
    for candidate in (confine(path, confine_to, "dataset path"), path / "dataset"):
        if any(confine(candidate / part, confine_to, "folder").is_dir() for part in ("spec", "gen")):
            return candidate
    raise DataError(
        "not a Glioma C6 folder: expected spec/ and gen/ (or dataset/spec, dataset/gen) inside", path=path
    )


def _split_json(root: Path, split: str, confine_to: Path | None) -> Path:
    folder = confine(root / SPLITS[split], confine_to, "split folder")
    if not folder.is_dir():
        raise DataError(f"split {split!r} folder {SPLITS[split]} is missing", path=root)
    preferred = confine(folder / f"anno_{split}.json", confine_to, "annotation file")
    if preferred.is_file():
        return preferred
    inside = sorted(folder.glob("*.json"))
    if len(inside) == 1:
        return inside[0]
    beside = sorted(p for p in folder.parent.glob("*.json") if split in p.stem)
    if len(beside) == 1 and not inside:
        return beside[0]
    listing = ", ".join(p.name for p in inside + beside) or "none"
    raise DataError(f"cannot pick the annotation json of split {split!r}; json files found: {listing}", path=folder)


def read_glioma_c6(
    path: str | Path,
    *,
    split: str | None = None,
    invalid: InvalidPolygons = "raise",
    confine_to: str | Path | None = None,
) -> Dataset:
    """Read Glioma C6; ``split`` is train, valid, test (the spec part) or gen; None reads all four.

    Instances keep the json's annotation order and every overlap. With ``confine_to``, every file read
    (the jsons, the images they name) must lie inside that folder (:mod:`cellbench.data.confine`).
    """
    confine_to = None if confine_to is None else Path(confine_to)
    root = _root(Path(path), confine_to)
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown Glioma C6 split {split!r}; choose from {', '.join(SPLITS)}", path=root)
    splits = [split] if split else [s for s in SPLITS if confine(root / SPLITS[s], confine_to, "split folder").is_dir()]
    samples, skipped, matched = [], {}, set()
    for name in splits:
        json_path = confine(_split_json(root, name, confine_to), confine_to, "annotation file")
        data = load_coco_json(json_path)
        category_class = _match_categories(data, json_path)
        matched.update(category_class.values())
        found, skip = parse_coco(
            data,
            json_path=json_path,
            category_class=category_class,
            classes=CLASSES,
            image_dirs=[root / SPLITS[name] / "images"],
            split=name,
            invalid=invalid,
            confine_to=confine_to,
        )
        samples.extend(found)
        skipped[name] = skip
    classes = tuple(c for c in CLASSES if c in matched)  # the classes the files define, used or not
    keep = {c: c for c in classes}
    samples = [dataclasses.replace(s, instances=s.instances.remap_classes(keep, classes)) for s in samples]
    return Dataset(
        layout="glioma-c6", root=root, samples=tuple(samples), classes=classes, split=split,
        tasks=TASKS, meta={"skipped": skipped},
    )


def _match_categories(data: dict, json_path: Path) -> dict[int, str]:
    used = {a.get("category_id") for a in data["annotations"]}
    matched, unknown = {}, []
    for cat in data["categories"]:
        cls = classify_category(cat)
        if cls is not None:
            matched[cat["id"]] = cls
        elif cat["id"] in used:
            unknown.append(cat)
        else:
            log.warning("%s: category %r has no annotations and is not recognised; ignored", json_path, cat.get("name"))
    if unknown or not matched:
        listing = "; ".join(
            f"id {c.get('id')}: {c.get('name')!r} (supercategory {c.get('supercategory')!r})" for c in data["categories"]
        )
        raise DataError(
            "cannot match Glioma C6 categories to cell type A / cell type B / soma; "
            f"categories found: {listing or 'none'}",
            path=json_path,
        )
    return matched
