"""`cellbench evaluate` on a whole-slide label-image pair: wall time and peak memory, banded and whole-array.

Builds (once, into --out) a 20,000 x 20,000 ground-truth label image with a
grid of ~40,000 elliptic cells and a perturbed prediction of it (centres
moved, sizes changed, 4 % of the cells missed, 2 % of the predictions
spurious, other ids), both tiled TIFFs (512 px tiles, zlib) written tile by
tile with tifffile, so building never holds a whole image either. Then runs
`cellbench evaluate --gt G --pred P --json ...` in a fresh process and prints
its wall time and peak RSS; and, when the machine has the memory for it
(--whole auto), the whole-array evaluation of the same pair (both images read
whole, `cellbench.metrics.evaluate` on the arrays) in another process, for
comparison. The two must give the same figures; the script checks it.

    python benchmarks/wsi_evaluate.py [--size 20000] [--spacing 100] [--out /tmp/wsi] [--whole auto|yes|no]
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

TILE = 512


def _cells(n: int, spacing: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per grid cell: centre offset, radii, id (0: no cell). A cell stays inside its spacing x spacing square."""
    half = spacing / 2
    return {
        "dy": rng.uniform(-0.08, 0.08, (n, n)) * spacing,
        "dx": rng.uniform(-0.08, 0.08, (n, n)) * spacing,
        "ry": rng.uniform(0.25, 0.38, (n, n)) * spacing,
        "rx": rng.uniform(0.25, 0.38, (n, n)) * spacing,
        "id": np.arange(1, n * n + 1, dtype=np.uint32).reshape(n, n),
        "half": np.array(half),
    }


def _perturbed(cells: dict[str, np.ndarray], spacing: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = cells["id"].shape[0]
    out = {k: v.copy() for k, v in cells.items()}
    out["dy"] += rng.normal(0, 0.03, (n, n)) * spacing
    out["dx"] += rng.normal(0, 0.03, (n, n)) * spacing
    out["ry"] *= rng.uniform(0.85, 1.12, (n, n))
    out["rx"] *= rng.uniform(0.85, 1.12, (n, n))
    ids = rng.permutation(n * n).astype(np.uint32).reshape(n, n) + 7
    ids[rng.random((n, n)) < 0.04] = 0  # missed cells
    out["id"] = ids
    return out


def _tiles(cells: dict[str, np.ndarray], size: int, spacing: int):
    """The label image, tile by tile (row-major), each pixel taking the ellipse of its grid square."""
    for y0 in range(0, size, TILE):
        for x0 in range(0, size, TILE):
            yy, xx = np.mgrid[y0 : y0 + TILE, x0 : x0 + TILE]
            gy = np.minimum(yy // spacing, cells["id"].shape[0] - 1)
            gx = np.minimum(xx // spacing, cells["id"].shape[1] - 1)
            cy = gy * spacing + cells["half"] + cells["dy"][gy, gx]
            cx = gx * spacing + cells["half"] + cells["dx"][gy, gx]
            inside = ((yy - cy) / cells["ry"][gy, gx]) ** 2 + ((xx - cx) / cells["rx"][gy, gx]) ** 2 <= 1
            tile = np.where(inside & (yy < size) & (xx < size), cells["id"][gy, gx], 0).astype(np.uint32)
            yield tile


def build(out: Path, size: int, spacing: int) -> tuple[Path, Path]:
    gt_dir, pred_dir = out / "gt", out / "pred"
    gt, pred = gt_dir / "slide_masks.tif", pred_dir / "slide.tif"
    if gt.exists() and pred.exists() and tifffile.TiffFile(gt).series[0].shape == (size, size):
        return gt_dir, pred_dir
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = size // spacing
    truth = _cells(n, spacing, rng)
    guess = _perturbed(truth, spacing, rng)
    spurious = rng.random((n, n)) < 0.02  # predictions where the ground truth has no cell
    truth["id"][spurious] = 0
    t = time.perf_counter()
    for path, cells in ((gt, truth), (pred, guess)):
        tifffile.imwrite(path, _tiles(cells, size, spacing), shape=(size, size), dtype=np.uint32, tile=(TILE, TILE),
                         compression="zlib")
    print(f"built {size} x {size} pair, {int((truth['id'] > 0).sum()):,} GT cells, "
          f"{int((guess['id'] > 0).sum()):,} predicted, in {time.perf_counter() - t:.0f} s: "
          f"{gt.stat().st_size / 1e6:.0f} + {pred.stat().st_size / 1e6:.0f} MB", flush=True)
    return gt_dir, pred_dir


WHOLE = """
import json, sys
from cellbench.data.images import read_label_image
from cellbench.metrics import evaluate
gt, pred, out = sys.argv[1:4]
res = evaluate([read_label_image(gt)], [read_label_image(pred)], names=["slide"])
open(out, "w").write(json.dumps(res.to_dict()))
"""


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("  (peak RSS not above an earlier child's; run the two modes separately to see it)")
    return wall, peak / 1024


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--spacing", type=int, default=100, help="grid step of the cells (100: 40,000 cells at 20,000 px)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/cellbench-wsi"))
    ap.add_argument("--whole", choices=["auto", "yes", "no"], default="auto",
                    help="also the whole-array evaluation (auto: when 4 x the two arrays fit in free memory)")
    args = ap.parse_args()
    gt_dir, pred_dir = build(args.out, args.size, args.spacing)
    banded = args.out / "banded.json"
    cli = "import sys; from cellbench.cli.main import main; sys.exit(main(sys.argv[1:]))"
    wall, peak = _run([sys.executable, "-c", cli, "evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir),
                       "--json", str(banded)])
    d = json.loads(banded.read_text())
    p = d["pooled"]["0.5"]
    print(f"cellbench evaluate (bands): {wall:.2f} s wall, peak RSS {peak:.0f} MB; "
          f"TP {p['tp']:,} FP {p['fp']:,} FN {p['fn']:,} F1@0.5 {p['f1']:.4f}", flush=True)
    need = 4 * 2 * args.size**2 * 4 / 2**20
    if args.whole == "yes" or (args.whole == "auto" and _available_mb() > need):
        whole = args.out / "whole.json"
        gt_file, pred_file = next(gt_dir.iterdir()), next(pred_dir.iterdir())
        wall, peak = _run([sys.executable, "-c", WHOLE, str(gt_file), str(pred_file), str(whole)])
        w = json.loads(whole.read_text())
        same = all(w[k] == d[k] for k in ("pooled", "image_mean", "per_image"))
        print(f"whole arrays:               {wall:.2f} s wall, peak RSS {peak:.0f} MB; "
              f"same figures (pooled, image mean, per image): {same}")
        if not same:
            sys.exit("the banded and whole-array evaluations differ")
    else:
        print(f"whole arrays: skipped (needs ~{need:,.0f} MB free, {_available_mb():,.0f} MB available)")


if __name__ == "__main__":
    main()
