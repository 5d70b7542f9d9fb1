"""Writing datasets out: label TIFF, COCO json (RLE), ImageJ ROI zip, QuPath GeoJSON.

:func:`write_dataset` writes a whole dataset into a folder, all or nothing,
with a ``cellbench-export.json`` manifest that records the source, the task and
the flatten policy (if any) of what is in the folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from cellbench import __version__
from cellbench.data.dataset import Dataset, Sample
from cellbench.data.export.coco import to_coco
from cellbench.data.export.geojson import to_geojson
from cellbench.data.export.imagej_roi import write_roi_zip
from cellbench.data.export.labels import read_label_tiff_metadata, write_label_tiff
from cellbench.files import staged_dir
from cellbench.instances import DEFAULT_POLICY, FlattenPolicy, flatten

__all__ = [
    "ExportFormat",
    "MANIFEST",
    "read_label_tiff_metadata",
    "to_coco",
    "to_geojson",
    "write_dataset",
    "write_label_tiff",
    "write_roi_zip",
]

ExportFormat = Literal["labels", "coco", "roi", "geojson"]
MANIFEST = "cellbench-export.json"


def _relative(dataset: Dataset, sample: Sample) -> Path:
    """Samples of several splits go in one sub-folder per split (names may repeat across splits)."""
    if dataset.split is None and sample.split is not None:
        return Path(sample.split) / sample.name
    return Path(sample.name)


def write_dataset(
    dataset: Dataset,
    out: str | Path,
    to: ExportFormat,
    *,
    policy: FlattenPolicy | None = None,
    with_images: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write ``dataset`` to folder ``out`` in format ``to``; returns the manifest.

    ``labels`` always flattens (with ``policy``, default priority-last); the
    other formats keep overlaps unless a ``policy`` is given. ``with_images``
    copies the images into ``images/`` beside the output.
    """
    if to not in ("labels", "coco", "roi", "geojson"):
        raise ValueError(f"unknown export format {to!r}; choose labels, coco, roi or geojson")
    if to == "labels" and policy is None:
        policy = DEFAULT_POLICY
    flatten_record = None
    files: list[str] = []
    n_instances = 0
    with staged_dir(out, overwrite=overwrite) as tmp:
        coco_samples = []
        from tqdm import tqdm  # imported on use: importing tqdm reads package metadata (~25 ms)

        for sample in tqdm(dataset.samples, desc=f"writing {to}", disable=not progress, unit="image"):
            rel = _relative(dataset, sample)
            instances = sample.instances
            flat = None
            if policy is not None:
                flat = flatten(instances, policy)
                flatten_record = {k: v for k, v in flat.metadata().items() if k != "lost_instances"}
                instances = flat.to_instance_set()
            n_instances += len(instances)
            writer = _WRITERS[to]
            written = writer(tmp, rel, sample, instances, flat)
            files.extend(written)
            if to == "coco":
                coco_samples.append(dataclasses.replace(sample, instances=instances))
            if with_images and sample.image_path is not None:
                target = tmp / "images" / rel.parent / sample.image_path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(sample.image_path, target)
        manifest = {
            "cellbench_version": __version__,
            "format": to,
            "source": {"layout": dataset.layout, "root": str(dataset.root), "split": dataset.split, "task": dataset.task},
            "classes": list(dataset.classes),
            "flatten": flatten_record,
            "n_images": len(dataset.samples),
            "n_instances": n_instances,
            "files": files,
        }
        if to == "coco":
            coco = to_coco(coco_samples, dataset.classes, info={"cellbench": manifest})
            (tmp / "annotations.json").write_text(json.dumps(coco))
            files.append("annotations.json")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _write_labels(tmp: Path, rel: Path, sample: Sample, instances, flat) -> list[str]:
    path = tmp / "labels" / rel.with_suffix(".tif")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_label_tiff(path, flat, extra={"image": sample.name, "classes": list(instances.classes)})
    return [str(path.relative_to(tmp))]


def _write_roi(tmp: Path, rel: Path, sample: Sample, instances, flat) -> list[str]:
    if not len(instances):
        return []
    path = tmp / "rois" / rel.with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_roi_zip(path, instances)
    return [str(path.relative_to(tmp))]


def _write_geojson(tmp: Path, rel: Path, sample: Sample, instances, flat) -> list[str]:
    path = tmp / "geojson" / rel.with_suffix(".geojson")
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"image": sample.name, "flatten": flat.metadata() if flat is not None else None}
    path.write_text(json.dumps(to_geojson(instances, extra=extra)))
    return [str(path.relative_to(tmp))]


def _write_nothing(tmp: Path, rel: Path, sample: Sample, instances, flat) -> list[str]:
    return []  # COCO is one file for the whole dataset, written at the end


_WRITERS: dict[str, Callable[..., list[str]]] = {
    "labels": _write_labels,
    "coco": _write_nothing,
    "roi": _write_roi,
    "geojson": _write_geojson,
}
