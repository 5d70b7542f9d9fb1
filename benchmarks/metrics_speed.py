"""Time cellbench's metrics beside StarDist, Cellpose, pycocotools and faster-coco-eval.

Inputs: full-size synthetic Glioma C6 images (2592 x 1944, ~170 overlapping GT
cells each, from cellbench's generator) and a prediction made by moving,
growing, shrinking and dropping GT cells and adding a few false ones (~160
cells, each with a score). The label-image tools (StarDist, Cellpose and the
bare numpy bincount of pixel pairs) get both sides flattened with the default
policy; the COCO tools get RLEs of the same instances. cellbench runs on the
instances (overlaps kept) and, separately, on the same label images.

Then the label-image overlap pass alone, side by side with Cellpose's numba
``_label_overlap`` (the pixel-pair table its metrics start from), on the same
arrays as uint16 (what label TIFFs hold) and int32, checked equal.

Then a memory check: a 10,000 x 10,000 image with 10,000 cells, evaluated as
instances (and as uint16 label images), peak RSS measured in a subprocess.

    python benchmarks/metrics_speed.py [--images 3] [--repeat 3] [--skip-memory] [--overlap-only]

The references are optional: StarDist comes with ``.[dev]``, Cellpose with
``.[cellpose]``; ``pip install faster-coco-eval`` for that one (skipped when
missing). Times are the best of ``--repeat`` runs, averaged over images.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from _timing import best_of  # benchmarks/_timing.py (scripts run from this folder)
from cellbench.data import read_dataset
from cellbench.data.synth import synth_glioma_c6
from cellbench.instances import Instance, InstanceSet, flatten, instance_to_rle
from cellbench.metrics import evaluate_image, overlaps_from_labels

THRESHOLDS = [0.5, 0.75, 0.9]


def _moved(inst: Instance, shape, rng) -> Instance | None:
    """A plausible prediction of ``inst``: shifted by up to 4 px, sometimes grown or shrunk, clipped."""
    y0, x0, y1, x1 = inst.bbox
    m = np.pad(inst.mask, 2)
    r = rng.random()
    if r < 0.25:
        m = ndimage.binary_dilation(m, iterations=2)
    elif r < 0.5:
        m = ndimage.binary_erosion(m, iterations=2)
    dy, dx = (int(v) for v in rng.integers(-4, 5, size=2))
    full = np.zeros((shape[0] + 8, shape[1] + 8), bool)
    oy, ox = y0 - 2 + dy + 4, x0 - 2 + dx + 4
    sy, sx = max(oy, 0), max(ox, 0)
    full_slice = full[sy : oy + m.shape[0], sx : ox + m.shape[1]]
    full_slice |= m[sy - oy : sy - oy + full_slice.shape[0], sx - ox : sx - ox + full_slice.shape[1]]
    crop = full[4 : 4 + shape[0], 4 : 4 + shape[1]]
    if not crop[max(y0 - 8, 0) : y1 + 8, max(x0 - 8, 0) : x1 + 8].any():
        return None
    sub = crop[max(y0 - 8, 0) : y1 + 8, max(x0 - 8, 0) : x1 + 8]
    return Instance.from_mask(sub, offset=(max(y0 - 8, 0), max(x0 - 8, 0)), score=float(rng.random()))


def make_prediction(gt: InstanceSet, rng) -> InstanceSet:
    out = []
    for inst in gt:
        if rng.random() < 0.1:
            continue
        moved = _moved(inst, gt.shape, rng)
        if moved is not None:
            out.append(moved)
    for _ in range(6):  # false positives
        y, x = int(rng.integers(50, gt.shape[0] - 50)), int(rng.integers(50, gt.shape[1] - 50))
        out.append(Instance.from_mask(np.ones((30, 30), bool), offset=(y, x), score=float(rng.random())))
    return InstanceSet(shape=gt.shape, instances=tuple(out), classes=("cell",))


def _coco_dicts(gts, preds):
    images, anns, results = [], [], []
    for k, (g, p) in enumerate(zip(gts, preds), start=1):
        images.append({"id": k, "height": g.shape[0], "width": g.shape[1], "file_name": f"{k}.tif"})
        for inst in g:
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "iscrowd": 0, "area": inst.area,
                         "bbox": [inst.bbox[1], inst.bbox[0], inst.bbox[3] - inst.bbox[1], inst.bbox[2] - inst.bbox[0]],
                         "segmentation": instance_to_rle(inst, g.shape)})
        for inst in p:
            results.append({"image_id": k, "category_id": 1, "score": inst.score,
                            "segmentation": instance_to_rle(inst, p.shape)})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}, results


def _pycocotools_eval(gt_dict, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in results]), iouType="segm")
        ev.params.maxDets = [1, 10, 3000]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, 2]
    return float(np.mean(p[p > -1]))


def _faster_coco_eval(gt_dict, results):
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_dict)
        ev = COCOeval_faster(coco_gt, coco_gt.loadRes([dict(r) for r in results]), iouType="segm", print_function=lambda *a: None)
        ev.params.maxDets = [1, 10, 3000]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, -1]
    return float(np.mean(p[p > -1]))


def glioma_pairs(n_images: int):
    """GT instances, predicted instances and both as int32 label images, of ``n_images`` Glioma-size images."""
    tmp = Path(tempfile.mkdtemp())
    synth_glioma_c6(tmp / "g", n_images=3 * n_images + 3, seed=1, cells_per_image=190)
    ds = read_dataset(tmp / "g" / "dataset", "glioma-c6", split="train", task="cells")
    rng = np.random.default_rng(0)
    gts = [s.instances for s in ds.samples[:n_images]]
    preds = [make_prediction(g, rng) for g in gts]
    gl = [flatten(g).labels.astype(np.int32) for g in gts]
    pl = [flatten(p).labels.astype(np.int32) for p in preds]
    print(f"{len(gts)} images {gts[0].shape[1]} x {gts[0].shape[0]}; GT cells {[len(g) for g in gts]} "
          f"(overlapping: {[g.n_overlapping for g in gts]}), predicted {[len(p) for p in preds]}")
    return gts, preds, gl, pl


def overlap_pass(gl, pl, repeat: int) -> None:
    """ms per image of cellbench's ``overlaps_from_labels`` and Cellpose's ``_label_overlap``, same arrays."""
    try:
        from cellpose.metrics import _label_overlap
    except ImportError:
        print("cellpose not installed: overlap pass skipped")
        return
    print(f"\n{'overlap pass, per image':32s} {'cellbench ms':>12s} {'Cellpose ms':>12s} {'Cellpose / cellbench':>21s}")
    for dtype in (np.uint16, np.int32):
        gs, ps = [g.astype(dtype) for g in gl], [p.astype(dtype) for p in pl]
        table = _label_overlap(gs[0], ps[0])  # compiles for this dtype
        ov, gids, pids = overlaps_from_labels(gs[0], ps[0])
        inner = table[np.ix_(gids, pids)]
        if not (np.array_equal(inner[ov.gt_index, ov.pred_index], ov.intersection)
                and np.count_nonzero(inner) == ov.intersection.size
                and np.array_equal(table[gids].sum(axis=1), ov.gt_area)
                and np.array_equal(table[:, pids].sum(axis=0), ov.pred_area)):
            raise SystemExit("cellbench's overlaps differ from Cellpose's table")
        ours = np.mean([best_of(lambda: overlaps_from_labels(g, p), repeat)[0] for g, p in zip(gs, ps)])
        theirs = np.mean([best_of(lambda: _label_overlap(g, p), repeat)[0] for g, p in zip(gs, ps)])
        print(f"{np.dtype(dtype).name + ' label images':32s} {ours * 1e3:12.1f} {theirs * 1e3:12.1f} {theirs / ours:21.2f}")


def speed(gts, preds, gl, pl, repeat: int) -> dict:

    per_image = {}

    def run(name, fn):
        times = []
        out = None
        for k in range(len(gts)):
            t, out = best_of(lambda: fn(k), repeat)
            times.append(t)
        per_image[name] = float(np.mean(times))
        return out

    run("numpy bincount of pixel pairs", lambda k: np.bincount(gl[k].ravel().astype(np.int64) * (int(pl[k].max()) + 1) + pl[k].ravel()))
    run("cellbench instances: 3 thresholds + COCO", lambda k: evaluate_image(gts[k], preds[k], thresholds=THRESHOLDS, coco=True))
    run("cellbench instances: 3 thresholds", lambda k: evaluate_image(gts[k], preds[k], thresholds=THRESHOLDS))
    run("cellbench label images: 3 thresholds", lambda k: evaluate_image(gl[k], pl[k], thresholds=THRESHOLDS))
    from stardist.matching import matching

    run("StarDist matching: 3 thresholds", lambda k: matching(gl[k], pl[k], thresh=THRESHOLDS))
    try:
        from cellpose.metrics import average_precision
        from skimage.segmentation import relabel_sequential

        glr = [relabel_sequential(x)[0] for x in gl]
        plr = [relabel_sequential(x)[0] for x in pl]
        run("Cellpose average_precision: 3 thresholds", lambda k: average_precision([glr[k]], [plr[k]], threshold=THRESHOLDS))
    except ImportError:
        print("cellpose not installed: skipped")
    t0 = time.perf_counter()
    for _ in range(repeat):
        gt_dict, results = _coco_dicts(gts, preds)
    per_image["RLE-encode for pycocotools"] = (time.perf_counter() - t0) / repeat / len(gts)
    t, ref_map = best_of(lambda: _pycocotools_eval(gt_dict, results), repeat)
    per_image["pycocotools COCOeval (evaluate+accumulate)"] = t / len(gts)
    try:
        t, fce_map = best_of(lambda: _faster_coco_eval(gt_dict, results), repeat)
        per_image["faster-coco-eval (evaluate+accumulate)"] = t / len(gts)
    except ImportError:
        fce_map = None
        print("faster-coco-eval not installed: skipped")
    from cellbench.metrics import evaluate

    ours = evaluate(gts, preds, thresholds=THRESHOLDS, coco=True).to_dict()["coco"]["map"]
    print(f"\nmAP@[.5:.95] maxDets 3000: cellbench {ours!r}  pycocotools {ref_map!r}  faster-coco-eval {fce_map!r}")
    base = per_image["numpy bincount of pixel pairs"]
    sd = per_image["StarDist matching: 3 thresholds"]
    print(f"\n{'per image':48s} {'ms':>9s} {'/ bincount':>11s} {'StarDist /':>11s}")
    for name, t in per_image.items():
        print(f"{name:48s} {t * 1e3:9.1f} {t / base:11.2f} {sd / t:11.2f}")
    return per_image


def _peak_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would carry the parent's peak over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_child(kind: str) -> None:
    rng = np.random.default_rng(0)
    shape = (10_000, 10_000)
    yy, xx = np.mgrid[-9:10, -9:10]
    disk = yy**2 + xx**2 <= 81
    centres = np.stack(np.meshgrid(np.arange(50, 10_000, 100), np.arange(50, 10_000, 100)), -1).reshape(-1, 2)
    gt = InstanceSet(shape=shape, instances=tuple(Instance.from_mask(disk, offset=(int(y) - 9, int(x) - 9)) for y, x in centres))
    shifts = rng.integers(-3, 4, size=(len(centres), 2))
    pred = InstanceSet(shape=shape, instances=tuple(
        Instance.from_mask(disk, offset=(int(y + dy) - 9, int(x + dx) - 9), score=float(rng.random()))
        for (y, x), (dy, dx) in zip(centres, shifts)))
    before = _peak_mb()
    t = time.perf_counter()
    if kind == "instances":
        r = evaluate_image(gt, pred, thresholds=THRESHOLDS, coco=True)
    else:
        g, p = flatten(gt).labels.astype(np.uint16), flatten(pred).labels.astype(np.uint16)
        del gt, pred
        before = _peak_mb()
        t = time.perf_counter()
        r = evaluate_image(g, p, thresholds=THRESHOLDS)
    dt = time.perf_counter() - t
    peak = _peak_mb()
    print(json.dumps({"kind": kind, "n_gt": r.n_gt, "n_pred": r.n_pred, "tp@0.5": r.counts[0].tp,
                      "seconds": dt, "peak_rss_mb": peak, "rss_before_eval_mb": before}))


def memory() -> None:
    print("\n10,000 x 10,000 image, 10,000 cells (peak resident memory of the whole process):")
    for kind in ("instances", "labels"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", kind], capture_output=True, text=True, check=True)
        d = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {kind:9s}: {d['n_gt']} GT / {d['n_pred']} pred, TP@0.5 {d['tp@0.5']}, "
              f"{d['seconds']:.2f} s, peak RSS {d['peak_rss_mb']:.0f} MB (before evaluating {d['rss_before_eval_mb']:.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--overlap-only", action="store_true", help="only the overlap pass beside Cellpose's")
    ap.add_argument("--memory-child", choices=["instances", "labels"])
    args = ap.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    pairs = glioma_pairs(args.images)
    if not args.overlap_only:
        speed(*pairs, args.repeat)
    overlap_pass(pairs[2], pairs[3], args.repeat)
    if not args.skip_memory and not args.overlap_only:
        memory()


if __name__ == "__main__":
    main()
