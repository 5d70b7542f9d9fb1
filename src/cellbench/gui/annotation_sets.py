"""Annotation sets written by the GUI: a COCO file with its images, in a layout every cellbench command reads.

``<workspace>/annotations/<set>/annotations.json`` (COCO, RLE masks, written by
:func:`cellbench.data.export.to_coco`) with the annotated images copied into
``images/`` beside it, so ``cellbench train cellseg1 --data annotations/<set>
--layout coco`` trains on it. Saving an image that the set already holds replaces
that image's annotations; the set's other images are kept.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from cellbench.data import Sample
from cellbench.data.export import to_coco
from cellbench.errors import DataError
from cellbench.files import staged_dir
from cellbench.gui.workspace import Workspace, safe_name
from cellbench.instances import Instance, InstanceSet

__all__ = ["ANNOTATIONS", "COCO_FILE", "load_annotations", "save_annotations"]

ANNOTATIONS = "annotations"
COCO_FILE = "annotations.json"


def load_annotations(workspace: Workspace, set_name: str, image_name: str) -> list[tuple[Instance, str]]:
    """The (instance, class name) pairs a set holds for the image called ``image_name`` (empty if none)."""
    path = workspace.resolve(f"{ANNOTATIONS}/{safe_name(set_name, 'annotation set name')}/{COCO_FILE}")
    if not path.is_file():
        return []
    ds = workspace.read_dataset(path, "coco")
    for s in ds.samples:
        if s.image_path is not None and s.image_path.name == image_name:
            return [(inst.replace(score=None), ds.classes[inst.class_id]) for inst in s.instances]
    return []


def save_annotations(workspace: Workspace, set_name: str, image_path: Path, shape: tuple[int, int],
                     annotations: Sequence[tuple[Instance, str]]) -> Path:
    """Write (or update) the set with ``annotations`` of ``image_path``; returns the COCO file's path."""
    folder = workspace.resolve(f"{ANNOTATIONS}/{safe_name(set_name, 'annotation set name')}")
    image_path = Path(image_path)
    kept: list[tuple[Path, InstanceSet]] = []
    if (folder / COCO_FILE).is_file():
        old = workspace.read_dataset(folder / COCO_FILE, "coco")
        for s in old.samples:
            if s.image_path is not None and s.image_path.name != image_path.name:
                kept.append((s.image_path, s.instances))
    names = [name for _, name in annotations]
    names += [cls for _, inst in kept for cls in inst.classes]
    classes = tuple(dict.fromkeys(names)) or ("cell",)
    if not annotations:
        raise DataError("no annotation to save: accept at least one cell", path=image_path)
    current = InstanceSet(shape, tuple(inst.replace(class_id=classes.index(name)) for inst, name in annotations),
                          classes)
    entries = [(image_path, current)]
    for path, inst in kept:  # re-index the kept images' classes into the merged class list
        entries.append((path, InstanceSet(inst.shape, tuple(i.replace(class_id=classes.index(inst.classes[i.class_id]))
                                                             for i in inst), classes)))
    (workspace.root / ANNOTATIONS).mkdir(exist_ok=True)
    with staged_dir(folder, overwrite=True) as tmp:
        (tmp / "images").mkdir()
        samples = []
        for path, inst in entries:
            target = tmp / "images" / path.name
            shutil.copy2(path, target)
            samples.append(Sample(path.stem, inst, image_path=target))
        coco = to_coco(samples, classes, info={"cellbench": {"written_by": "cellbench gui", "set": set_name}})
        (tmp / COCO_FILE).write_text(json.dumps(coco))
    return folder / COCO_FILE
