"""``cellbench evaluate``: score predictions against ground truth."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cellbench.data import LAYOUTS, read_dataset
from cellbench.data.layouts.coco import load_coco_json
from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.metrics import DEFAULT_METRICS, DEFAULT_THRESHOLDS, METRICS, Evaluator, Metric, metric_named
from cellbench.metrics.sources import Loader, pair_name, segmentation_file, segmentation_loaders

__all__ = ["add_evaluate_command"]


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.75,0.9, got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"IoU thresholds must be in (0, 1], got {text!r}")
    return values


def _max_pixels(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels (0: no limit), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--max-pixels must be >= 0, got {text!r}")
    return value


def _metric_names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    try:
        for n in names:
            metric_named(n)
    except DataError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None
    return names


def _registered(gt: str) -> bool:
    """``--gt`` names a registered dataset (read with its own layout), not a path that exists here."""
    if Path(gt).exists():
        return False
    from cellbench.data.registry import DATASETS  # imported on use: it brings the downloader (http.client)

    return gt in DATASETS


def _ground_truth(args: argparse.Namespace) -> dict[str, Loader]:
    if args.gt_layout or _registered(args.gt):
        ds = read_dataset(args.gt, args.gt_layout, split=args.split, task=args.task)
        return {pair_name(s.name): (lambda s=s: s.instances) for s in ds.samples}
    return segmentation_loaders(args.gt, max_pixels=args.max_pixels, banded=True)


def _run(args: argparse.Namespace) -> int:
    gt = _ground_truth(args)
    gt_coco = None
    if Path(args.gt).suffix.lower() == ".json" and Path(args.gt).is_file():
        gt_coco = load_coco_json(Path(args.gt))
    pred = segmentation_loaders(args.pred, gt_coco=gt_coco, max_pixels=args.max_pixels, banded=True)
    missing = sorted(set(gt) - set(pred))
    extra = sorted(set(pred) - set(gt))
    for n in extra[:10]:  # an unpaired file that cannot be read is the problem to report first
        pred[n]()
    for n in [] if args.missing_as_empty else missing[:10]:
        gt[n]()
    if extra:
        raise DataError(f"{len(extra)} prediction(s) have no ground truth: {extra[:10]}", path=args.pred)
    if missing and not args.missing_as_empty:
        raise DataError(
            f"{len(missing)} ground-truth image(s) have no prediction: {missing[:10]} "
            "(use --missing-as-empty to score them as empty predictions)",
            path=args.pred,
        )
    names = sorted(gt)
    with tempfile.TemporaryDirectory(prefix="cellbench-evaluate-") as spool:
        # One pair in memory at a time: label images are read as they are scored, their records go to a file.
        per_image = args.per_image or Path(spool) / "per_image.jsonl"
        with Evaluator(thresholds=args.iou, boundary_px=args.boundary_px, metrics=args.metrics, coco=args.coco,
                       max_dets=args.max_dets, per_class=args.per_class, per_image=per_image) as evaluator:
            for n in _tqdm()(names, desc="evaluate", unit="image") if sys.stderr.isatty() else names:
                g = gt[n]()
                if n in pred:
                    p = pred[n]()
                    _check_shape(g, p, n, args)
                else:  # scored as an empty prediction
                    p = InstanceSet(shape=tuple(g.shape), classes=getattr(g, "classes", ("cell",)))
                evaluator.update(g, p, name=n)
                del g, p
            result = evaluator.compute()
        settings = {"gt": str(args.gt), "pred": str(args.pred), "missing_as_empty": missing}
        if args.json:
            result.write_json(args.json, settings=settings)
        if args.csv:
            result.to_csv(args.csv)
    d = result.to_dict(per_image=False)
    d["settings"].update(settings)
    _print_table(d, [m for m in evaluator.metrics if m.name not in DEFAULT_METRICS])
    return 0


def _check_shape(gt, pred, name: str, args: argparse.Namespace) -> None:
    """A prediction the size of its ground truth, or an error naming both files."""
    if tuple(gt.shape) != tuple(pred.shape):
        gt_file = Path(args.gt) if args.gt_layout or _registered(args.gt) else segmentation_file(args.gt, name)
        (gh, gw), (ph, pw) = gt.shape, pred.shape
        raise DataError(f"prediction of image {name!r} is {ph} x {pw} (h x w) but its ground truth {gt_file} "
                        f"is {gh} x {gw}", path=segmentation_file(args.pred, name))


def _tqdm():
    """tqdm, imported only for a terminal: its import costs ~25 ms of every scripted `cellbench evaluate`."""
    from tqdm import tqdm

    return tqdm


def _fmt(v) -> str:
    return "   -  " if v is None else f"{v:6.4f}"


def _print_table(d: dict, extra: list[Metric]) -> None:
    """The pooled counts and ratios at each threshold, F1 over images, COCO, and a line per value of the
    threshold-free metrics asked for beyond the default ones."""
    print(f"{d['n_images']} images; boundary rule: {d['settings']['boundary_rule']}")
    print(f"{'IoU':>5} {'TP':>6} {'FP':>6} {'FN':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'ap_dsb':>6}   "
          f"{'F1 image mean':>13} {'median':>6} {'std':>6}")
    for key, p in d["pooled"].items():
        m = d["image_mean"][key]
        print(f"{key:>5} {p['tp']:6d} {p['fp']:6d} {p['fn']:6d} {_fmt(p['precision'])} {_fmt(p['recall'])} "
              f"{_fmt(p['f1'])} {_fmt(p['ap_dsb'])}   {_fmt(m['f1']):>13} {_fmt(m['f1_median'])} {_fmt(m['f1_std'])}")
    print("(TP/FP/FN and the ratios beside them are pooled over images; ap_dsb = TP/(TP+FP+FN))")
    first = next(iter(d["pooled"]))
    for m in extra:
        for k, v in enumerate(m.averaged if not m.per_threshold else ()):
            pooled, mean = d["pooled"][first].get(v), d["image_mean"][first]
            line = (f"{v:>14} {'pooled ' + _fmt(pooled) if m.pooled else '':>13}   image mean {_fmt(mean[v])}"
                    + (f" {_fmt(mean[v + '_median'])} {_fmt(mean[v + '_std'])}" if v in m.spread else " " * 14)
                    + ("" if k else f"   {m.title}"))
            print(line.rstrip())
    if "coco" in d:
        c = d["coco"]
        print(f"COCO (maxDets {c['max_dets']}): mAP {_fmt(c['map'])}  AP50 {_fmt(c['ap50'])}  AP75 {_fmt(c['ap75'])}  "
              f"AR50 {_fmt(c['ar50'])}  AR75 {_fmt(c['ar75'])}")


def add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predictions against ground truth",
        description="Score predictions against ground truth. GT and predictions are folders of label images "
        "(paired by file stem, ignoring _masks/_label/_pred suffixes) or COCO json files; with --gt-layout the "
        "ground truth is read by any layout reader (overlapping instances kept).",
    )
    p.add_argument("--gt", required=True, help="ground truth: label-image folder, COCO json, a dataset (--gt-layout), "
                   "or the name of a downloaded dataset (cellbench data list)")
    p.add_argument("--pred", required=True, help="predictions: label-image folder or COCO json (full file or results list)")
    p.add_argument("--gt-layout", choices=list(LAYOUTS), help="read --gt with this layout reader")
    p.add_argument("--split", help="with --gt-layout: the split to read")
    p.add_argument("--task", default="all", help="with --gt-layout: the task (e.g. glioma-c6 cells)")
    default_iou = ",".join(map(str, DEFAULT_THRESHOLDS))
    p.add_argument("--iou", type=_thresholds, default=list(DEFAULT_THRESHOLDS),
                   help=f"IoU thresholds (default {default_iou}, the Glioma C6 paper's)")
    p.add_argument("--boundary-px", type=int, default=0,
                   help="NeurIPS-2022 rule: drop instances within N px of the image edge (2 in the challenge; default 0 = off)")
    p.add_argument("--metrics", type=_metric_names, default=list(DEFAULT_METRICS), metavar="NAME,...",
                   help=f"metric families (default {','.join(DEFAULT_METRICS)}; the matching counts are always "
                   "scored): " + "; ".join(f"{m.name}: {m.title}" for m in METRICS))
    p.add_argument("--coco", action="store_true", help="also COCO mAP/AP50/AP75/AR50/AR75 (needs scored COCO predictions; "
                   "the same as adding coco to --metrics)")
    p.add_argument("--max-dets", type=int, default=3000, help="COCO max detections per image (default 3000)")
    p.add_argument("--per-class", action="store_true", help="also per class and macro over classes")
    p.add_argument("--missing-as-empty", action="store_true", help="score GT images without a prediction as empty")
    p.add_argument("--max-pixels", type=_max_pixels, default=None, metavar="N",
                   help="most pixels a PNG / JPEG / BMP label image may claim in its header (default: twice Pillow's "
                   "MAX_IMAGE_PIXELS, ~358 million; 0: no limit). TIFF has no limit: it is read a band of rows at a "
                   "time")
    p.add_argument("--json", help="write all results to this JSON file")
    p.add_argument("--csv", help="write the per-image table to this CSV file")
    p.add_argument("--per-image", metavar="FILE.jsonl", help="also keep the per-image records in this JSON-lines "
                   "file, one line per image as it is scored (it appears when the evaluation completes)")
    p.set_defaults(func=_run)
