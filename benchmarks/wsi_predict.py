"""`cellbench predict` on a whole-slide image: wall time, peak memory and the score, per method.

Builds (once, into --out) a --size x --size 8-bit image of ~40,000 bright
elliptic cells on a noisy background (the cell layout of wsi_evaluate.py: a
grid of cells 100 px apart) and its ground-truth label image, both tiled TIFFs
written tile by tile. Trains each method briefly on a 1024 x 1024 corner of it
(watershed: its parameter search; cellpose: --cellpose-epochs from scratch),
then runs `cellbench predict MODEL --images slide.tif` in a fresh process and
prints its wall time, peak RSS and tile count, and the F1@0.5 of the output
label TIFF against the ground truth (`cellbench evaluate`, read in bands).

Cellpose on CPU costs seconds a tile, so it predicts a band of the slide
(--cellpose-rows rows, full width: the same tiles per row, the same stitching,
the same output writer), unless --cellpose-rows 0 asks for the whole slide.

    python benchmarks/wsi_predict.py [--size 20000] [--methods watershed cellpose] [--out /tmp/cellbench-wsi-predict]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from wsi_evaluate import TILE, _cells, _tiles  # noqa: E402  (the same cells as the evaluation benchmark)

CLI = "import sys; from cellbench.cli.main import main; sys.exit(main(sys.argv[1:]))"
CORNER = 1024  # training crop


def _slide_tiles(size: int, spacing: int, height: int, labels: bool):
    """The first ``height`` rows of the slide (or of its labels), tile by tile: cells at ~170 on a background at
    ~40, Gaussian noise sd 12. The same cells and noise on every call."""
    cells = _cells(size // spacing, spacing, np.random.default_rng(0))
    noise = np.random.default_rng(1)
    per_row = -(-size // TILE)
    for k, tile in enumerate(_tiles(cells, size, spacing)):
        top = (k // per_row) * TILE
        if top >= height:
            return
        tile = tile[: height - top]
        if labels:
            yield tile
        else:
            yield np.clip(np.where(tile > 0, 170.0, 40.0) + noise.normal(0, 12, tile.shape), 0, 255).astype(np.uint8)


def build(out: Path, size: int, spacing: int, rows: int = 0) -> tuple[Path, Path]:
    """<name>/<name>.tif and gt-<name>/<name>_masks.tif in ``out``: the slide, or its first ``rows`` rows."""
    name = f"band{rows}" if rows else "slide"
    image, gt = out / name / f"{name}.tif", out / f"gt-{name}" / f"{name}_masks.tif"
    height = rows or size
    if image.exists() and gt.exists() and tifffile.TiffFile(image).series[0].shape == (height, size):
        return image, gt
    image.parent.mkdir(parents=True, exist_ok=True)
    gt.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for path, dtype, labels in ((image, np.uint8, False), (gt, np.uint32, True)):
        tifffile.imwrite(path, _slide_tiles(size, spacing, height, labels), shape=(height, size), dtype=dtype,
                         tile=(TILE, TILE), compression="zlib")
    print(f"built {image} ({height} x {size}) and its labels in {time.perf_counter() - t:.0f} s", flush=True)
    return image, gt


def train(method: str, image: Path, gt: Path, out: Path, epochs: int) -> Path:
    """A model of ``method`` trained on the slide's top-left corner."""
    from cellbench.data.dataset import Sample
    from cellbench.data.image_file import open_image
    from cellbench.instances import InstanceSet
    from cellbench.methods import config_from_dict, get_method
    from cellbench.methods.tiling import method_tiling
    from cellbench.methods.training import train_model

    folder = out / f"model-{method}"
    if (folder / "model.json").is_file():
        return folder
    with open_image(image, lazy_pixels=0) as pixels, open_image(gt, lazy_pixels=0) as labels:
        crop = np.asarray(pixels[0:CORNER, 0:CORNER])
        truth = InstanceSet.from_label_image(np.asarray(labels[0:CORNER, 0:CORNER]))
    cls = get_method(method)
    values = {  # watershed: a smoothed distance map (an exact one has many tied maxima, seconds a tile to space)
        "watershed": {"distance_sigmas": [1.0, 2.0]},
        "cellpose": {"diam_mean": 30.0, "diameter": 60.0, "bsize": 96, "n_epochs": epochs, "nimg_per_epoch": 8,
                     "min_train_masks": 1, "threads": 2},
    }[method]
    config = config_from_dict(cls.Config, values)
    t = time.perf_counter()
    train_model(cls(config), [Sample("corner", truth, array=crop)], out=folder, seed=0,
                tiling=method_tiling(cls, config=config), overwrite=True)
    print(f"trained {method} on the {CORNER} px corner in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def _run(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one child process (the peak of all children so far: run
    methods in separate invocations to see a smaller one)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, after.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--spacing", type=int, default=100)
    ap.add_argument("--methods", nargs="+", default=["watershed"], choices=["watershed", "cellpose"])
    ap.add_argument("--cellpose-rows", type=int, default=1024,
                    help="rows of the slide cellpose predicts (0: all; CPU cellpose costs seconds a tile)")
    ap.add_argument("--cellpose-epochs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("/tmp/cellbench-wsi-predict"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    slide, gt = build(args.out, args.size, args.spacing)
    for method in args.methods:
        model = train(method, slide, gt, args.out, args.cellpose_epochs)
        rows = args.cellpose_rows if method == "cellpose" else 0
        image, truth = build(args.out, args.size, args.spacing, rows) if rows else (slide, gt)
        pred = args.out / f"pred-{method}"
        wall, cpu, peak = _run([sys.executable, "-c", CLI, "predict", str(model), "--images", str(image),
                           "--out", str(pred), "--overwrite"])
        manifest = json.loads((pred / "cellbench-predict.json").read_text())
        labels = pred / "labels" / f"{image.stem}.tif"
        with tifffile.TiffFile(labels) as tif:
            page = tif.pages[0]
            layout = f"{page.imagelength} x {page.imagewidth}, tiles {page.chunks}, {page.dtype}"
        scored = args.out / f"eval-{method}.json"
        subprocess.run([sys.executable, "-c", CLI, "evaluate", "--gt", str(truth.parent), "--pred",
                        str(labels.parent), "--json", str(scored)], check=True, stdout=subprocess.DEVNULL)
        p = json.loads(scored.read_text())["pooled"]["0.5"]
        n = manifest["images"][0]["n_instances"]
        print(f"{method}: cellbench predict {wall:.1f} s wall, {cpu:.1f} CPU s, peak RSS {peak:.0f} MB, "
              f"{n:,} instances; "
              f"labels {layout}; F1@0.5 {p['f1']:.4f} (TP {p['tp']:,} FP {p['fp']:,} FN {p['fn']:,})", flush=True)


if __name__ == "__main__":
    main()
