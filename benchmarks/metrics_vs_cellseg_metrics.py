"""Time cellbench's PQ, AJI and AJI+ beside cellseg-metrics 0.2.0 on the same label images, and print the ratio.

Inputs: ``--pairs`` synthetic pairs of ``--size`` x ``--size`` int32 label
images with about ``--cells`` cells each (ellipses of 10-20 px radius at
random places, later ones on top) and a prediction of each (cells shifted by
up to 3 px, some grown or shrunk, 5 % dropped, 3 % given the previous cell's
id so that one prediction covers two cells, a few false cells). Same arrays for both libraries.

Compared, per set of pairs (every call scores one image from its label images):

* PQ with IoU > 0.5: cellbench ``evaluate_image(metrics=["pq_canonical"])``
  (which also gives the matching counts at IoU 0.5) against
  ``cellseg_metrics.panoptic_quality``; the values are printed beside each
  other (cellseg-metrics adds 1e-8 to its denominators);
* AJI and AJI+: cellbench ``metrics=["aji"]`` / ``["aji_plus"]`` against
  ``cellseg_metrics.aggregated_jaccard_index``, which pairs each GT cell with
  the prediction of largest intersection (not IoU, as HoVer-Net's AJI) and
  has no AJI+, so its values differ; the time is still the same job's.

    pip install --no-deps cellseg-metrics==0.2.0   # it asks for numpy >= 2.2.6, cellpose 3 pins numpy < 2.1
    python benchmarks/metrics_vs_cellseg_metrics.py [--pairs 10] [--size 1024] [--cells 400] [--repeat 3]

cellbench's times are the best of ``--repeat`` runs; cellseg-metrics (seconds
per image) runs once.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from _timing import best_of  # benchmarks/_timing.py (scripts run from this folder)
from cellbench.metrics import evaluate_image, metric_named


def synthetic_pair(rng: np.random.Generator, size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """A label image of ``cells`` ellipses and a perturbed prediction of it (both int32, ids 1..n)."""
    gt = np.zeros((size, size), np.int32)
    pred = np.zeros_like(gt)
    yy, xx = np.mgrid[-24:25, -24:25]
    next_id = 1
    for cell in range(1, cells + 1):
        cy, cx = rng.integers(27, size - 27, size=2)  # the window stays inside when shifted
        ry, rx = rng.uniform(10, 20, size=2)
        angle = rng.uniform(0, np.pi)
        c, s = np.cos(angle), np.sin(angle)
        disk = ((c * yy + s * xx) / ry) ** 2 + ((-s * yy + c * xx) / rx) ** 2 <= 1
        gt[cy - 24 : cy + 25, cx - 24 : cx + 25][disk] = cell
        r = rng.random()
        if r < 0.05:
            continue  # missed
        m = disk
        if r < 0.25:
            m = ndimage.binary_dilation(m, iterations=2)
        elif r < 0.45:
            m = ndimage.binary_erosion(m, iterations=2)
        dy, dx = rng.integers(-3, 4, size=2)
        window = pred[cy - 24 + dy : cy + 25 + dy, cx - 24 + dx : cx + 25 + dx]
        window[m] = next_id if rng.random() > 0.03 or next_id == 1 else next_id - 1  # one prediction, two cells
        next_id += 1
    for _ in range(cells // 40):  # false cells
        y, x = rng.integers(0, size - 12, size=2)
        pred[y : y + 12, x : x + 12] = next_id
        next_id += 1
    return gt, pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--cells", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import cellseg_metrics  # optional: see the module docstring

    rng = np.random.default_rng(0)
    pairs = [synthetic_pair(rng, args.size, args.cells) for _ in range(args.pairs)]
    n_gt = [len(np.unique(g)) - 1 for g, _ in pairs]
    n_pred = [len(np.unique(p)) - 1 for _, p in pairs]
    print(f"{args.pairs} pairs of {args.size} x {args.size} int32 label images; GT cells {min(n_gt)}-{max(n_gt)}, "
          f"predicted {min(n_pred)}-{max(n_pred)}; cellseg-metrics {cellseg_metrics.__version__}")

    def ours(name: str) -> list[dict]:
        metric = metric_named(name)()
        return [metric.values(evaluate_image(g, p, thresholds=(0.5,), metrics=[metric]).parts[name])
                for g, p in pairs]

    jobs = [
        ("PQ, IoU > 0.5", lambda: ours("pq_canonical"),
         lambda: [cellseg_metrics.panoptic_quality(g, p, thresh=0.5) for g, p in pairs], "pq_canonical", "pq"),
        ("AJI", lambda: ours("aji"),
         lambda: [cellseg_metrics.aggregated_jaccard_index(g, p) for g, p in pairs], "aji", None),
        ("AJI+", lambda: ours("aji_plus"), None, "aji_plus", None),
    ]
    print(f"{'metric':<14} {'cellbench s':>11} {'cellseg-metrics s':>17} {'ratio':>7}   values (image mean)")
    ref_aji = None
    for label, mine, theirs, key, ref_key in jobs:
        t_ours, values = best_of(mine, args.repeat)
        v_ours = float(np.mean([v[key] for v in values]))
        if theirs is None:
            print(f"{label:<14} {t_ours:11.3f} {'(none)':>17} {'':>7}   cellbench {v_ours:.6f}; cellseg-metrics "
                  f"has no AJI+ (its AJI {ref_aji:.6f})")
            continue
        t_ref, ref = best_of(theirs, 1)
        v_ref = float(np.mean([float(r[ref_key]) if ref_key else float(r) for r in ref]))
        ref_aji = v_ref if key == "aji" else ref_aji
        note = "its AJI pairs by largest intersection" if key == "aji" else \
            f"relative difference {abs(v_ours - v_ref) / v_ref:.1e}"
        print(f"{label:<14} {t_ours:11.3f} {t_ref:17.2f} {t_ref / t_ours:6.0f}x   cellbench {v_ours:.6f}, "
              f"cellseg-metrics {v_ref:.6f} ({note})")


if __name__ == "__main__":
    main()
