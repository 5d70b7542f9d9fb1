"""``cellbench analyze morphology`` (per-instance shape table and figures) and ``cellbench agreement``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from cellbench.cli.evaluate import _thresholds
from cellbench.data import LAYOUTS, read_dataset
from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.instances import InstanceSet
from cellbench.metrics import GLIOMA_THRESHOLDS
from cellbench.metrics.sources import pair_name, read_segmentations, segmentation_file

__all__ = ["add_analyze_commands", "read_predictions"]


def read_predictions(path: str | Path) -> dict[str, InstanceSet]:
    """Predictions by image name from a ``cellbench predict`` folder, a label-image folder or a COCO json.

    A predict folder is read from its ``predictions.json`` (COCO, overlaps
    and scores kept) when it has one, else from ``labels/*.tif``.
    """
    path = Path(path)
    source = path
    if path.is_dir() and (path / "predictions.json").is_file():
        source = path / "predictions.json"
    elif path.is_dir() and (path / "labels").is_dir():
        source = path / "labels"
    out = {}
    for name, seg in sorted(read_segmentations(source).items()):
        if not isinstance(seg, InstanceSet):
            seg = InstanceSet.from_label_image(seg, source=str(segmentation_file(source, name)))
        out[name] = seg
    return out


def _ground_truth(path: str, layout: str, split: str | None, task: str) -> dict[str, InstanceSet]:
    ds = read_dataset(path, layout, split=split, task=task)
    return {pair_name(s.name): s.instances for s in ds.samples}


def _progress():
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm


def _morphology(args: argparse.Namespace) -> int:
    from cellbench.analysis import morphology_figures, morphology_table, write_morphology_csv

    gt = _ground_truth(args.path, args.layout, args.split, args.task)
    records = morphology_table(gt, source="ground truth", progress=_progress())
    label = f"{args.path} ({args.layout}, split {args.split or 'all'}, task {args.task})"
    if args.pred:
        records += morphology_table(read_predictions(args.pred), source="prediction", progress=_progress())
        label += f" vs predictions {args.pred}"
    write_morphology_csv(records, args.csv)
    counts = Counter((r.source, r.class_name) for r in records)
    for (source, cls), n in counts.items():
        print(f"{source:>12} {cls:>10}: {n} instances")
    print(f"morphology of {len(records)} instances (each measured whole, overlaps kept) in {args.csv}")
    if args.plots:
        for path in morphology_figures(records, args.plots, label=label):
            print(f"figure: {path}")
    return 0


def _unique_names(paths: list[str]) -> list[str]:
    """The paths as given, numbered when the same path is given twice."""
    seen = Counter(paths)
    count: Counter = Counter()
    out = []
    for p in paths:
        count[p] += 1
        out.append(f"{p} #{count[p]}" if seen[p] > 1 else p)
    return out


def _agreement(args: argparse.Namespace) -> int:
    from cellbench.analysis import agreement

    if len(args.annotations) < 2:
        raise DataError("--annotations needs at least two annotation sets to compare")

    def read(path: str) -> dict[str, InstanceSet]:
        return _ground_truth(path, args.layout, args.split, args.task)

    annotations = dict(zip(_unique_names(args.annotations), map(read, args.annotations)))
    consensus = read(args.consensus) if args.consensus else None
    preds = args.pred or []
    predictions = dict(zip(_unique_names(preds), map(read_predictions, preds)))
    result = agreement(annotations, consensus=consensus, predictions=predictions, thresholds=args.iou)
    d = result.to_dict()
    d["settings"].update({"layout": args.layout, "split": args.split, "task": args.task,
                          "consensus": args.consensus or "built by the rule in consensus_rule"})
    atomic_write_bytes(args.json, json.dumps(d, indent=2).encode())
    keys = list(d["vs_consensus"][0]["by_iou"]) if d["vs_consensus"] else []
    print(f"{len(result.images)} image(s); ap_dsb pooled over images at IoU {', '.join(keys)}; "
          "reference -> other (the reference is scored as ground truth)")
    for p in (*d["pairs"], *d["vs_consensus"]):
        scores = "  ".join(_fmt(p["by_iou"][k]["ap_dsb"]) for k in keys)
        print(f"  {p['reference']} -> {p['other']}: {scores}")
    print(f"agreement written to {args.json}")
    return 0


def _fmt(v: float | None) -> str:
    return "  -   " if v is None else f"{v:.4f}"


def add_analyze_commands(sub: argparse._SubParsersAction) -> None:
    analyze = sub.add_parser("analyze", help="analyses of data and predictions (morphology)",
                             description="Analyses of a dataset and of predictions.")
    kinds = analyze.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    m = kinds.add_parser(
        "morphology",
        help="per-instance shape table (area, eccentricity, solidity, ...) and figures",
        description="One CSV row per instance of the ground truth (and of predictions with --pred): area, perimeter, "
        "eccentricity, solidity, convexity, elongation, equivalent_diameter. Overlapping instances are each "
        "measured whole. Definitions: cellbench.analysis.morphology.",
    )
    m.add_argument("path", help="the dataset")
    m.add_argument("--layout", required=True, choices=list(LAYOUTS), help="layout of PATH")
    m.add_argument("--split", help="the split to read")
    m.add_argument("--task", default="all", help="the task (e.g. glioma-c6 cells)")
    m.add_argument("--pred", help="predictions: a `cellbench predict` folder, a label-image folder or a COCO json")
    m.add_argument("--csv", required=True, help="write the table to this CSV file")
    m.add_argument("--plots", help="write morphology_distributions.png and morphology_scatter.png into this folder")
    m.set_defaults(func=_morphology)

    a = sub.add_parser(
        "agreement",
        help="annotation agreement: annotation sets against each other and a consensus (Glioma C6 Table 3)",
        description="ap_dsb at each IoU for every pair of annotation sets (the first of a pair is the reference, "
        "scored as ground truth), and for each set and prediction against a consensus (given with --consensus, "
        "else built: see consensus_rule in the JSON), per image and pooled.",
    )
    a.add_argument("--annotations", nargs="+", required=True, metavar="PATH", help="two or more annotation sets")
    a.add_argument("--layout", required=True, choices=list(LAYOUTS), help="layout of every annotation set")
    a.add_argument("--split", help="the split to read")
    a.add_argument("--task", default="all", help="the task")
    a.add_argument("--consensus", metavar="PATH", help="a consensus annotation in the same layout (else one is built)")
    a.add_argument("--pred", action="append", metavar="P",
                   help="predictions to score against the consensus (repeatable): a `cellbench predict` folder, "
                   "a label-image folder or a COCO json")
    a.add_argument("--iou", type=_thresholds, default=list(GLIOMA_THRESHOLDS),
                   help="IoU thresholds (default 0.5,0.75,0.9, the Glioma C6 paper's)")
    a.add_argument("--json", required=True, help="write the agreement to this JSON file")
    a.set_defaults(func=_agreement)
