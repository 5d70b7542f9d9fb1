"""``cellbench demo``: the data pipeline end to end, on data that ships offline.

1. Real data: the DSB2018 test image with 125 annotated nuclei that ships in
   the ``stardist`` wheel, written in the StarDist layout, read back, exported
   to all four formats, and the exports checked against the source pixels.
2. A synthetic Glioma C6 dataset at full resolution: read with overlaps,
   tasks, the three flatten policies side by side, and a label export.
3. Overlay PNGs of both, to look at.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from cellbench.data import read_dataset
from cellbench.data.export import staged_dir, write_dataset
from cellbench.data.layouts import read_coco
from cellbench.data.synth import split_counts, synth_glioma_c6
from cellbench.errors import DataError
from cellbench.instances import NearestCentroidFlatten, PriorityFlatten, flatten, instance_geometry
from cellbench.report import draw_outlines

__all__ = ["add_demo_command", "run_demo"]

_SUMMARY = "demo-summary.json"


def _dsb_image() -> tuple[np.ndarray, np.ndarray]:
    try:
        from stardist.data import test_image_nuclei_2d
    except ImportError as exc:
        raise DataError("the demo needs the stardist package for its real DSB2018 image: pip install 'cellbench[demo]'") from exc
    return test_image_nuclei_2d(return_mask=True)


def _real_data(out: Path, log) -> dict:
    image, labels = _dsb_image()
    root = out / "dsb2018"
    for sub, array in (("images", image), ("masks", labels)):
        (root / sub).mkdir(parents=True)
        tifffile.imwrite(root / sub / "nuclei_2d.tif", array)
    dataset = read_dataset(root, "dsb")
    summary = dataset.summary()
    log(f"real DSB2018 image: {summary['n_instances']} nuclei, label ids up to {int(labels.max())} (with gaps)")
    for fmt in ("labels", "coco", "roi", "geojson"):
        write_dataset(dataset, out / f"dsb2018-{fmt}", fmt)
    back = read_coco(out / "dsb2018-coco" / "annotations.json", image_dir=root / "images").samples[0].instances
    source = dataset.samples[0].instances
    exact = len(back) == len(source) and all(
        a.bbox == b.bbox and np.array_equal(a.mask, b.mask) for a, b in zip(source, back)
    )
    area_error = sum(abs(instance_geometry(i).area - i.area) for i in source)
    log(f"  COCO RLE round trip exact: {exact}; outline polygons vs pixel areas, total difference: {area_error:g} px")
    iio.imwrite(out / "dsb2018-overlay.png", draw_outlines(dataset.samples[0].load_image(), source))
    return {"summary": summary, "coco_round_trip_exact": exact, "outline_area_difference_px": float(area_error)}


def _synthetic_glioma(out: Path, n_images: int, log) -> dict:
    root = out / "glioma-c6-synth"
    synth_glioma_c6(root, n_images=n_images, seed=0)
    started = time.perf_counter()
    dataset = read_dataset(root, "glioma-c6")
    seconds = time.perf_counter() - started
    summary = dataset.summary()
    log(f"synthetic Glioma C6 ({n_images} images of 2592 x 1944): {summary['n_instances']} instances "
        f"read in {seconds:.2f} s, {summary['n_overlapping_instances']} overlapping; per class {summary['per_class']}")
    tasks = {}
    for task in ("cells", "soma", "type-a", "type-b"):
        tasks[task] = dataset.with_task(task).summary()["per_class"]
    # The test split, or train when there are too few images for a test split (n_images == 1).
    split = "test" if split_counts(n_images)["test"] else "train"
    test = read_dataset(root, "glioma-c6", split=split, task="cells")
    policies = {}
    for policy in (PriorityFlatten("first"), PriorityFlatten("last"), NearestCentroidFlatten()):
        lost = sum(len(flatten(s.instances, policy).lost) for s in test)
        policies[policy.name] = {"instances": sum(len(s.instances) for s in test), "lost": lost}
    log(f"  flattening the {split} split (task cells): " + ", ".join(
        f"{name} loses {p['lost']} of {p['instances']}" for name, p in policies.items()))
    write_dataset(test, out / f"glioma-c6-{split}-cells-labels", "labels", policy=PriorityFlatten("last"))
    sample = dataset.samples[0]
    crop = (slice(500, 1300), slice(700, 1800))
    overlay = draw_outlines(sample.load_image(), sample.instances)[crop]
    iio.imwrite(out / "glioma-synth-overlay.png", overlay)
    return {"summary": summary, "read_seconds": seconds, "tasks": tasks, "flatten_split": split, "flatten_cells": policies}


def run_demo(out: str | Path, *, n_images: int = 4, log=print) -> dict:
    """Run the demo into ``out`` (replacing an earlier demo there) and return its summary."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / _SUMMARY).is_file():
        raise DataError("output folder exists and holds something other than a cellbench demo", path=out)
    started = time.perf_counter()
    with staged_dir(out, overwrite=True) as tmp:
        result = {"real_dsb2018": _real_data(tmp, log), "synthetic_glioma_c6": _synthetic_glioma(tmp, n_images, log)}
        result["seconds"] = time.perf_counter() - started
        (tmp / _SUMMARY).write_text(json.dumps(result, indent=2))
    log(f"demo done in {result['seconds']:.1f} s; results, exports and overlays in {out}/")
    return result


def _main(args: argparse.Namespace) -> int:
    run_demo(args.out, n_images=args.images, log=lambda msg: print(msg, file=sys.stdout, flush=True))
    return 0


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the data pipeline end to end on data that ships offline")
    demo.add_argument("--out", default="cellbench-demo", help="output folder (default ./cellbench-demo)")
    demo.add_argument("--images", type=int, default=4, help="synthetic Glioma C6 images (default 4)")
    demo.set_defaults(func=_main)
