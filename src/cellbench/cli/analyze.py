"""``cellbench analyze morphology | transfer | rank | regress`` and ``cellbench agreement``."""

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
from cellbench.metrics import GLIOMA_THRESHOLDS, threshold_key
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


def _ks(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated pixel counts such as 0,1,2,4, got {text!r}") \
            from None
    if not values or values[0] < 0:
        raise argparse.ArgumentTypeError(f"k must be >= 0 pixels, got {text!r}")
    return values


def _paired(gt: dict[str, InstanceSet], preds: dict[str, InstanceSet], what: str) -> list[InstanceSet]:
    missing = sorted(set(gt) - set(preds))
    if missing:
        raise DataError(f"{what} has no prediction for {len(missing)} image(s) of the dataset: "
                        f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return [preds[name] for name in gt]


def _write_table(path: Path, rows: list[dict]) -> None:
    import csv
    import io

    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if v is None else v for k, v in r.items()})
    path.write_text(buf.getvalue())


def _transfer(args: argparse.Namespace) -> int:
    from cellbench.analysis import transfer_figure, transfer_rows, transfer_sweep
    from cellbench.files import staged_dir

    nuclei = _ground_truth(args.path, args.layout, args.split, args.nuclei_task)
    cells = _ground_truth(args.path, args.layout, args.split, args.cell_task)
    if list(nuclei) != list(cells):
        raise DataError(f"tasks {args.nuclei_task!r} and {args.cell_task!r} of {args.path} hold different images")
    names = list(nuclei)
    src_n = _paired(nuclei, read_predictions(args.pred_nuclei), "--pred-nuclei") if args.pred_nuclei else list(
        nuclei.values())
    src_c = _paired(cells, read_predictions(args.pred_cells), "--pred-cells") if args.pred_cells else list(
        cells.values())
    label_n = f"predicted nuclei ({args.pred_nuclei})" if args.pred_nuclei else f"GT {args.nuclei_task}"
    label_c = f"predicted cells ({args.pred_cells})" if args.pred_cells else f"GT {args.cell_task}"
    common = dict(ks=args.k, thresholds=args.iou, names=names, coco=not args.no_coco, progress=_progress())
    sweeps = [
        transfer_sweep(src_n, list(cells.values()), operation="dilate", source_label=label_n,
                       target_label=f"GT {args.cell_task}", **common),
        transfer_sweep(src_c, list(nuclei.values()), operation="erode", source_label=label_c,
                       target_label=f"GT {args.nuclei_task}", **common),
    ]
    data = f"{args.path} ({args.layout}, split {args.split or 'all'}, {len(names)} images)"
    with staged_dir(args.out, overwrite=args.overwrite) as tmp:
        rows = transfer_rows(sweeps)
        _write_table(tmp / "transfer.csv", rows)
        (tmp / "transfer.json").write_text(json.dumps(
            {"data": data, "sweeps": [s.to_dict() for s in sweeps]}, indent=1))
        transfer_figure(sweeps, tmp / "transfer.png", title=f"Modality transfer on {data}")
    t0 = threshold_key(args.iou[0])
    for s in sweeps:
        best, first = s.best("coco_map" if not args.no_coco else f"ap_dsb@{t0}"), s.points[0]
        print(f"{s.source} {s.operation}d vs {s.target}: AP@{t0} {_fmt(first.pooled[t0]['ap_dsb'])} at k={first.k}; "
              f"best k={best.k}: AP@{t0} {_fmt(best.pooled[t0]['ap_dsb'])}, COCO mAP {_fmt(best.coco_map)}")
    print(f"transfer sweep written to {args.out} (transfer.csv, transfer.json, transfer.png)")
    return 0


def _rank(args: argparse.Namespace) -> int:
    from cellbench.analysis import ranking_rows
    from cellbench.files import staged_dir
    from cellbench.report import load_results
    from cellbench.report.paper_sections import ranking_figure, ranking_from_run, ranking_table

    ranking, source, notes = ranking_from_run(load_results(args.run_dir), usability=args.usability)
    table = ranking_table(ranking, source, notes)
    with staged_dir(args.out, overwrite=args.overwrite) as tmp:
        (tmp / "ranking.csv").write_text(table.to_csv())
        (tmp / "ranking.json").write_text(json.dumps(
            {**ranking.to_dict(), "usability_source": source, "notes": notes, "rows_tidy": ranking_rows(ranking)},
            indent=1))
        ranking_figure(ranking, tmp / "ranking.png")
    for r in ranking.rows:
        print(f"{r.rank if r.rank is not None else '-':>3}  {r.model:<40} overall {_fmt(r.overall)}  accuracy "
              f"{_fmt(r.mean_accuracy)}  usability {_fmt(r.usability)}  scalability {_fmt(r.scalability)}")
    for note in notes:
        print(f"note: {note}")
    print(f"ranking written to {args.out} (ranking.csv, ranking.json, ranking.png)")
    return 0


def _regress(args: argparse.Namespace) -> int:
    from cellbench.analysis import regression_rows
    from cellbench.files import staged_dir
    from cellbench.report import load_results
    from cellbench.report.paper_sections import regression_from_run, regression_table

    fits = regression_from_run(load_results(args.run_dir), level=args.level)
    with staged_dir(args.out, overwrite=args.overwrite) as tmp:
        (tmp / "regression.csv").write_text(regression_table(fits).to_csv())
        (tmp / "regression.json").write_text(json.dumps(
            {"fits": [f.to_dict() for f in fits], "rows": regression_rows(fits)}, indent=1))
    for f in fits:
        print(f"{f.group}: {f.formula}, {f.n_obs} observations" + (f", R² {_fmt(f.r_squared)}" if f.coefficients
                                                                     else f": {f.note}"))
        for c in f.coefficients:
            print(f"  {c.term:<10} {c.estimate:+.4f}  CI [{_fmt(c.low)}, {_fmt(c.high)}]  p {_fmt(c.p_value)}")
        for d in f.dropped:
            print(f"  dropped {d}")
    print(f"regression written to {args.out} (regression.csv, regression.json)")
    return 0


def _fmt(v: float | None) -> str:
    return "  -   " if v is None else f"{v:.4f}"


def add_analyze_commands(sub: argparse._SubParsersAction) -> None:
    analyze = sub.add_parser("analyze", help="analyses of data, predictions and runs (morphology, transfer, rank, "
                             "regress)",
                             description="Analyses of datasets, predictions and benchmark runs.")
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

    t = kinds.add_parser(
        "transfer",
        help="modality transfer: nuclei dilated into cells, cells eroded into nuclei, scored for a range of k",
        description="The 18-methods paper's Fig. 5b-c on a dataset with nuclear and whole-cell tasks (e.g. "
        "TissueNet): nuclei (ground truth, or --pred-nuclei) grown by k px stopping at neighbours "
        "(skimage expand_labels) and scored against the whole-cell ground truth; cells (ground truth, or "
        "--pred-cells) eroded by k px (scipy binary_erosion per instance) and scored against the nuclear ground "
        "truth. Writes transfer.csv, transfer.json and transfer.png into --out.",
    )
    t.add_argument("path", help="the dataset")
    t.add_argument("--layout", required=True, choices=list(LAYOUTS), help="layout of PATH")
    t.add_argument("--split", help="the split to read")
    t.add_argument("--nuclei-task", default="nuclei", help="the nuclear task (default nuclei, TissueNet's)")
    t.add_argument("--cell-task", default="whole-cell", help="the whole-cell task (default whole-cell)")
    t.add_argument("--pred-nuclei",
                   help="predicted nuclei to dilate (a `cellbench predict` folder, label images, COCO)")
    t.add_argument("--pred-cells", help="predicted cells to erode (same forms)")
    t.add_argument("--k", type=_ks, default=list(range(11)), help="pixel counts (default 0,1,...,10)")
    t.add_argument("--iou", type=_thresholds, default=list(GLIOMA_THRESHOLDS),
                   help="IoU thresholds of the pooled ap_dsb (default 0.5,0.75,0.9)")
    t.add_argument("--no-coco", action="store_true", help="skip COCO mAP (faster)")
    t.add_argument("--out", required=True, help="output folder (written whole or not at all)")
    t.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    t.set_defaults(func=_transfer)

    r = kinds.add_parser(
        "rank",
        help="rank a run's models by accuracy, usability and scalability (18-methods paper)",
        description="Accuracy of a task = mean of COCO mAP, AP50, AP75, AR50, AR75; usability from a score file "
        "(default: cellbench's, see cellbench/analysis/usability.yaml); scalability = 1 - mean normalised "
        "standardised training time Ts; normalised = standard normal CDF of the z-score across models; overall = "
        "mean. Needs a run scored with COCO metrics. Writes ranking.csv, ranking.json and ranking.png into --out.",
    )
    r.add_argument("run_dir", metavar="RUN_DIR", help="a `cellbench run` folder")
    r.add_argument("--usability", metavar="FILE", help="usability scores (YAML, the layout of the default file)")
    r.add_argument("--out", required=True, help="output folder (written whole or not at all)")
    r.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    r.set_defaults(func=_rank)

    g = kinds.add_parser(
        "regress",
        help="regression of COCO mAP on training images, cell size and elongation (18-methods paper)",
        description="Per method: OLS of COCO mAP on min-max-scaled number of training images, mean GT cell size and "
        "mean GT elongation over the run's tasks, regimes and seeds (statsmodels, the extra cellbench[analysis]); "
        "coefficients, confidence intervals and p-values. Writes regression.csv and regression.json into --out.",
    )
    g.add_argument("run_dir", metavar="RUN_DIR", help="a `cellbench run` folder (its data must still be readable)")
    g.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    g.add_argument("--out", required=True, help="output folder (written whole or not at all)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    g.set_defaults(func=_regress)

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
