"""Loading a Glioma-size image with ~300 overlapping instances: cellbench vs pycocotools.

Synthesises one 2592 x 1944 image in the Glioma C6 layout, then loads its
annotations (a) with cellbench's glioma-c6 reader (bbox-cropped masks) and
(b) the usual way with pycocotools (COCO + annToMask, one full-size mask per
annotation). Prints wall times, instance-mask memory and the ratios.

    .venv/bin/python benchmarks/load_speed.py [--cells 160] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from _timing import best_of  # benchmarks/_timing.py (scripts run from this folder)
from cellbench.data import read_dataset
from cellbench.data.synth import synth_glioma_c6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=160, help="mean cells per image (somata come on top)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synth_glioma_c6(tmp, n_images=1, cells_per_image=args.cells, seed=0)
        json_path = Path(tmp) / "dataset/spec/train/anno_train.json"

        t_cb, ds = best_of(lambda: read_dataset(tmp, "glioma-c6", split="train"), args.repeat)
        instances = ds.samples[0].instances
        cb_bytes = sum(i.mask.nbytes for i in instances)

        def pycoco():
            with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
                coco = COCO(str(json_path))
            return [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds())]

        t_pc, masks = best_of(pycoco, args.repeat)
        pc_bytes = sum(m.nbytes for m in masks)

    assert len(masks) == len(instances)
    for inst, m in zip(instances, masks):  # same pixels, instance by instance
        assert np.array_equal(inst.to_full(m.shape), m.astype(bool))
    print(f"image 2592 x 1944, {len(instances)} instances, {instances.n_overlapping} overlapping")
    print(f"cellbench   read_dataset   : {t_cb * 1000:8.1f} ms   masks {cb_bytes / 2**20:8.2f} MiB")
    print(f"pycocotools COCO+annToMask : {t_pc * 1000:8.1f} ms   masks {pc_bytes / 2**20:8.2f} MiB")
    print(f"ratio pycocotools/cellbench: time {t_pc / t_cb:.1f}x, memory {pc_bytes / cb_bytes:.0f}x")


if __name__ == "__main__":
    main()
