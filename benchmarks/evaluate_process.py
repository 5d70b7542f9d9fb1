"""Whole-process `cellbench evaluate` against StarDist's `matching_dataset`, on label-image TIFFs.

Makes N Glioma-size pairs (2592 x 1944, ~170 cells each, from cellbench's
Glioma C6 generator): the ground truth flattened to a label image, and a
prediction made from it as metrics_speed.py does (cells moved, grown, shrunk,
dropped, a few false ones), both written as uint16 TIFFs to two folders. Then
times, each run a fresh process from start to JSON, sides alternating, one
untimed warm-up each, best of ``--repeat``:

* cellbench: ``cellbench evaluate --gt G --pred P --iou 0.5,0.75,0.9 --json out.json``
* StarDist: a script that reads the same TIFFs with tifffile, runs
  ``matching_dataset(gt, pred, thresh=[0.5, 0.75, 0.9], by_image=False)`` and
  writes TP / FP / FN to JSON,

its peak resident memory (cellbench reads one pair at a time), and the start-up cost of each (``cellbench evaluate --help`` against
``python -c "import stardist.matching"``). TP / FP / FN at every threshold
must be equal on both sides, or the script exits with status 1.

    .venv/bin/python benchmarks/evaluate_process.py [--images 20] [--repeat 3] [--data DIR]

``--data DIR`` keeps the TIFFs in DIR and reuses them when DIR/gt and
DIR/pred already exist (making 20 pairs takes ~30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THRESHOLDS = [0.5, 0.75, 0.9]

STARDIST_SCRIPT = """\
import json, sys
from pathlib import Path
import tifffile
from stardist.matching import matching_dataset
gt_dir, pred_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
names = sorted(p.name for p in gt_dir.glob("*.tif"))
gt = [tifffile.imread(gt_dir / n) for n in names]
pred = [tifffile.imread(pred_dir / n) for n in names]
res = matching_dataset(gt, pred, thresh=THRESHOLDS, by_image=False, show_progress=False)
counts = {repr(float(r.thresh)): {"tp": int(r.tp), "fp": int(r.fp), "fn": int(r.fn)} for r in res}
Path(out).write_text(json.dumps(counts))
""".replace("THRESHOLDS", repr(THRESHOLDS))


def make_pairs(folder: Path, n_images: int) -> None:
    """``folder/gt/img_KK.tif`` and ``folder/pred/img_KK.tif``: N label-image pairs of Glioma size."""
    import numpy as np
    import tifffile

    from cellbench.data import read_dataset
    from cellbench.data.synth import synth_glioma_c6
    from cellbench.instances import flatten
    from metrics_speed import make_prediction  # benchmarks/metrics_speed.py (scripts run from this folder)

    with tempfile.TemporaryDirectory() as tmp:
        synth_glioma_c6(Path(tmp) / "g", n_images=n_images + 1, seed=1, cells_per_image=210)
        ds = read_dataset(Path(tmp) / "g" / "dataset", "glioma-c6", task="cells")
        gts = [s.instances for s in ds.samples[:n_images]]
    rng = np.random.default_rng(0)
    for sub in ("gt", "pred"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, g in enumerate(gts):
        p = make_prediction(g, rng)
        for sub, labels in (("gt", flatten(g).labels), ("pred", flatten(p).labels)):
            tifffile.imwrite(folder / sub / f"img_{k:02d}.tif", labels.astype(np.uint16), compression="zlib")


def _cellbench_exe() -> list[str]:
    exe = Path(sys.executable).parent / "cellbench"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cellbench.cli.main"]


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


# A fresh small process runs the command and reports its child's peak resident memory. Measuring from
# this (large) process would not do: Linux carries the parent's high-water mark across fork and exec.
PEAK_WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
)


def _peak_mb(cmd: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *cmd], check=True, capture_output=True, text=True)
    return float(out.stdout)


def _best_alternating(a: list[str], b: list[str], repeat: int) -> tuple[float, float]:
    """Best wall seconds of each command, run a, b, a, b, ... after one untimed run of each."""
    _wall(a), _wall(b)
    ta, tb = [], []
    for _ in range(max(1, repeat)):
        ta.append(_wall(a))
        tb.append(_wall(b))
    return min(ta), min(tb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, help="keep (and reuse) the TIFF pairs in this folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data or tmp / "data"
        if not ((data / "gt").is_dir() and (data / "pred").is_dir()):
            t = time.perf_counter()
            make_pairs(data, args.images)
            print(f"made {args.images} pairs in {time.perf_counter() - t:.0f} s")
        gt_dir, pred_dir = data / "gt", data / "pred"
        n = len(list(gt_dir.glob("*.tif")))
        script = tmp / "stardist_side.py"
        script.write_text(STARDIST_SCRIPT)
        cb_json, sd_json = tmp / "cellbench.json", tmp / "stardist.json"
        iou = ",".join(map(str, THRESHOLDS))
        cb = [*_cellbench_exe(), "evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir), "--iou", iou,
              "--json", str(cb_json)]
        sd = [sys.executable, str(script), str(gt_dir), str(pred_dir), str(sd_json)]
        cb_help = [*_cellbench_exe(), "evaluate", "--help"]
        sd_import = [sys.executable, "-c", "import stardist.matching"]
        bare = [sys.executable, "-c", "import numpy"]

        load = os.getloadavg()
        t_bare = min(_wall(bare) for _ in range(args.repeat))
        t_cb_help, t_sd_import = _best_alternating(cb_help, sd_import, args.repeat)
        t_cb, t_sd = _best_alternating(cb, sd, args.repeat)
        load_after = os.getloadavg()

        ours = json.loads(cb_json.read_text())
        theirs = json.loads(sd_json.read_text())
        same = True
        print(f"\n{n} label-image pairs 2592 x 1944 (uint16 TIFF, zlib); mean GT cells "
              f"{sum(r['n_gt'] for r in ours['per_image']) / n:.0f}, predicted "
              f"{sum(r['n_pred'] for r in ours['per_image']) / n:.0f}")
        print(f"{'IoU':>5} {'cellbench TP/FP/FN':>20} {'StarDist TP/FP/FN':>20}")
        for t in THRESHOLDS:
            key = repr(float(t))
            a = tuple(ours["pooled"][key][k] for k in ("tp", "fp", "fn"))
            b = tuple(theirs[key][k] for k in ("tp", "fp", "fn"))
            same &= a == b
            print(f"{key:>5} {'/'.join(map(str, a)):>20} {'/'.join(map(str, b)):>20}")
        print(f"\nload average {load[0]:.2f} before, {load_after[0]:.2f} after; best of {args.repeat}, "
              f"fresh process per run, sides alternating, one warm-up each")
        print(f"{'whole process, seconds':42s} {'cellbench':>10s} {'StarDist':>10s} {'StarDist / cellbench':>21s}")
        print(f"{'python -c import numpy (floor)':42s} {t_bare:10.3f}")
        print(f"{'start-up (evaluate --help / import)':42s} {t_cb_help:10.3f} {t_sd_import:10.3f} "
              f"{t_sd_import / t_cb_help:21.2f}")
        print(f"{f'evaluate {n} pairs, 3 thresholds, to JSON':42s} {t_cb:10.3f} {t_sd:10.3f} {t_sd / t_cb:21.2f}")
        print(f"{'  the same less start-up':42s} {t_cb - t_cb_help:10.3f} {t_sd - t_sd_import:10.3f} "
              f"{(t_sd - t_sd_import) / (t_cb - t_cb_help):21.2f}")
        m_cb, m_sd = _peak_mb(cb), _peak_mb(sd)
        print(f"{'peak resident memory of the process, MB':42s} {m_cb:10.0f} {m_sd:10.0f} {m_sd / m_cb:21.2f}")
        if not same:
            print("counts differ between cellbench and StarDist", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
