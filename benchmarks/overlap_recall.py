"""Issue 15, "Overlap, measured": what training on flattened masks costs where Glioma C6 cells overlap.

On a synthetic Glioma C6 set (``cellbench data synth``'s generator: full-size
2592 x 1944 phase-contrast-like images, overlapping cells of type A and B,
task ``cells`` = both types as one class), each method trains through the
standard Method interface, its model is saved as a model directory and read
back, and the test images are predicted with the model's tiling
(:meth:`~cellbench.methods.model_dir.LoadedModel.predict`: what ``cellbench
predict`` and the runner do):

* ``cellpose`` trains on masks flattened by its ``flatten`` policy
  (priority-last, a later polygon covering an earlier one), as the Glioma C6
  paper trained Cellpose and MediarFormer;
* ``maskrcnn`` and ``yolo`` train on the overlapping annotations as they are
  (``yolo`` is skipped with a note where Ultralytics is not installed).

Scored at IoU 0.5 with the Glioma protocol's 2 px boundary rule
(:mod:`cellbench.metrics.overlap_recall`): recall of the GT cells that
overlap another GT cell and of those that do not, against the overlapping
ground truth (paper Table 2) and against the ground truth flattened with the
same priority-last policy (paper Table 4), plus the overall F1 at IoU 0.5.
Two reference rows need no training: the annotation itself as the
prediction (a perfect method that keeps overlaps) and the annotation
flattened (a perfect method that gives each pixel to one cell: the ceiling
of Cellpose-like methods against the overlapping GT).

Settings per method: ``examples/configs/overlap/<method>.yaml`` (a
``cellbench train --config`` file, ``tiling`` included), else the method's
``cpu`` preset. Printed per method: train and predict wall and CPU seconds
(user + system of this process and its children) and the load average.

    .venv/bin/python benchmarks/overlap_recall.py --out overlap.json      # the README table
    .venv/bin/python benchmarks/overlap_recall.py --images-train 2 --images-test 1 --size 486x648 \\
        --configs /tmp/tiny-configs --methods cellpose maskrcnn    # a quick check with 1-epoch configs
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from cellbench.data import read_dataset
from cellbench.data.synth import split_counts, synth_glioma_c6
from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.instances import flatten, policy_from_name
from cellbench.methods import config_from_dict, config_to_dict, get_method, unmet_requirements
from cellbench.methods.config_file import read_config_file
from cellbench.methods.model_dir import load_model, save_model, train_summary
from cellbench.methods.tiling import method_tiling
from cellbench.metrics.overlap_recall import overlap_recall

REPO = Path(__file__).resolve().parent.parent
FULL = (1944, 2592)
CELLS_FULL = 180  # cells per full-size image, the generator's default
THRESHOLD = 0.5
BOUNDARY_PX = 2  # the Glioma protocol (NeurIPS-2022 rule)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and its waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def load() -> float:
    return os.getloadavg()[0]


def progress_factory():
    return functools.partial(tqdm, file=sys.stderr, dynamic_ncols=True, mininterval=2.0)


def shape_arg(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 1944x2592, got {text!r}") from None
    return h, w


def synth_images_needed(n_train: int, n_test: int) -> int:
    """The fewest images ``synth_glioma_c6`` splits into at least ``n_train`` train and ``n_test`` test images."""
    n = 1
    while True:
        counts = split_counts(n)
        if counts["train"] >= n_train and counts["test"] >= n_test:
            return n
        n += 1


def synthetic_set(args: argparse.Namespace) -> Path:
    """The synthetic set for these settings, made once in the work folder and reused after."""
    h, w = args.size
    cells = args.cells_per_image
    n = synth_images_needed(args.images_train, args.images_test)
    folder = Path(args.workdir) / f"synth-{h}x{w}-n{n}-c{cells}-seed{args.seed}"
    if (folder / "dataset").is_dir():
        print(f"synthetic Glioma C6 set: reusing {folder}")
        return folder
    with tqdm(total=n, desc="synthesising", unit="image", file=sys.stderr) as bar:
        summary = synth_glioma_c6(folder, n_images=n, seed=args.seed, shape=(h, w), cells_per_image=cells,
                                  progress=bar.update)
    made = ", ".join(f"{k} {v['n_images']}" for k, v in summary.items())
    print(f"synthetic Glioma C6 set: {folder} ({made} images; as cellbench data synth --layout glioma-c6 "
          f"--images {n} --shape {h}x{w} --cells-per-image {cells} --seed {args.seed})")
    return folder


def read_split(path: Path, split: str, n: int):
    """The first ``n`` images (by name) of one split, task ``cells`` (type A and B as one class)."""
    samples = sorted(read_dataset(path, "glioma-c6", split=split, task="cells").samples, key=lambda s: s.name)
    if len(samples) < n:
        raise DataError(f"split {split!r} has {len(samples)} images, {n} asked for", path=path)
    return samples[:n]


def method_settings(name: str, configs: Path) -> tuple[dict, str]:
    """A method's config values (``tiling`` included) and where they came from."""
    cls = get_method(name)
    path = configs / f"{name}.yaml"
    if path.is_file():
        return read_config_file(path), str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    if "cpu" in cls.presets:
        return dict(cls.presets["cpu"]), f"{name} preset cpu ({path} not found)"
    return {}, f"{name} defaults ({path} not found)"


def skip_reason(name: str) -> str | None:
    """Why a method cannot run here, or None."""
    try:
        unmet = unmet_requirements(get_method(name))
    except DataError as exc:  # a method module that does not import here
        return f"{name}: {exc}"
    return f"{name}: {unmet}" if unmet else None


def trained_on(config) -> str:
    """What a method learns from: methods with a ``flatten`` setting (one cell per pixel) flatten the annotation
    with it; the others (Mask R-CNN, YOLO) take the overlapping instances as they are."""
    policy = getattr(config, "flatten", None)
    return f"flattened ({policy})" if policy else "overlapping"


def run_method(name: str, train, test, args: argparse.Namespace) -> dict:
    """Train, save, reload, predict the test images and score one method."""
    cls = get_method(name)
    values, source = method_settings(name, Path(args.configs))
    values = dict(values)
    tiling_values = values.pop("tiling", None)
    config = config_from_dict(cls.Config, values, source=source)
    tiling = method_tiling(cls, tiling_values, config=config, source=source)
    trains_on = trained_on(config)
    print(f"\n== {name}: trains on {trains_on} GT; settings {source}; tiling {tiling.to_dict()}")
    sys.stdout.flush()
    progress = progress_factory()
    model_dir = Path(args.workdir) / "models" / name
    load0 = load()
    if args.reuse_models and (model_dir / "model.json").is_file():  # trained by an earlier run of this script
        print(f"{name}: reusing the model trained by an earlier run, {model_dir} (its training time is in that "
              f"run's output)")
        train_wall = train_cpu = None
        load1 = load0
    else:
        method = cls(config)
        method.tiling = tiling  # validation and SAM's calibration predict as the model will (as train_model does)
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        history = method.train(train, None, seed=args.seed, progress=progress)
        train_wall, train_cpu, load1 = time.perf_counter() - wall0, cpu_seconds() - cpu0, load()
        summary = train_summary(train, source={"benchmark": "overlap_recall", "task": "cells"})
        save_model(method, model_dir, train_summary=summary, seed=args.seed, history=history, tiling=tiling,
                   overwrite=True)
        del method  # predictions come from the model as read back, as `cellbench predict` reads it
    model = load_model(model_dir, method_class=cls)
    if config_to_dict(model.method.config) != config_to_dict(config):
        raise DataError(f"the saved {name} model was trained with other settings than {source}; "
                        f"train again without --reuse-models", path=model_dir)
    history = model.history
    predictions = []
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    for sample in progress(test, desc=f"{name} predict", unit="image"):
        predictions.append(model.predict(sample.load_image()))
    predict_wall, predict_cpu, load2 = time.perf_counter() - wall0, cpu_seconds() - cpu0, load()
    scores = score([s.instances for s in test], predictions, args.flatten)
    last = history.epochs[-1].loss if history.epochs else None
    trained = ("reused" if train_wall is None else
               f"{train_wall:.1f} s wall / {train_cpu:.1f} s CPU (load {load0:.1f} -> {load1:.1f})")
    print(f"{name}: train {trained}, "
          f"final loss {last if last is None else round(last, 4)}; predict {len(test)} image(s) "
          f"{predict_wall:.1f} s wall / {predict_cpu:.1f} s CPU (load -> {load2:.1f}); "
          f"{sum(len(p) for p in predictions)} instances predicted")
    return {
        "label": f"{name}, trained on {trains_on} GT", "trains_on": trains_on, "settings": source, "config": config_to_dict(config),
        "tiling": tiling.to_dict(), "model_dir": str(model_dir),
        "train_wall_s": train_wall, "train_cpu_s": train_cpu, "predict_wall_s": predict_wall,
        "predict_cpu_s": predict_cpu, "load_avg": [load0, load1, load2],
        "history": {"epochs": len(history.epochs), "final_loss": last, "info": history.info},
        "n_predicted": [len(p) for p in predictions], "scores": scores,
    }


def score(gts, predictions, flatten_name: str) -> dict:
    """Overlap recall against the overlapping GT and against the GT flattened by ``flatten_name``."""
    policy = policy_from_name(flatten_name)
    return {kind: overlap_recall(gts, predictions, threshold=THRESHOLD, boundary_px=BOUNDARY_PX,
                                 flatten_policy=policy if kind == "flattened" else None).to_dict()
            for kind in ("overlap", "flattened")}


def references(test, flatten_name: str) -> dict:
    """The ceilings, no training: the annotation itself as the prediction (a perfect overlap-aware method), and
    the annotation flattened by the training policy (a perfect method that gives each pixel to one cell)."""
    gts = [s.instances for s in test]
    policy = policy_from_name(flatten_name)
    flat = [flatten(g, policy).to_instance_set() for g in gts]
    return {"gt": {"label": "reference: the GT itself (perfect, overlaps kept)",
                   "scores": score(gts, gts, flatten_name)},
            "gt-flattened": {"label": f"reference: the GT flattened by {flatten_name} (perfect, one cell per pixel)",
                             "scores": score(gts, flat, flatten_name)}}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown_table(results: dict) -> str:
    """method | GT | recall overlapping | recall non-overlapping | n | F1@0.5, in % as the paper's tables."""
    lines = ["| method | GT scored against | recall, overlapping GT | recall, non-overlapping GT | "
             "n (overlapping / non-overlapping) | F1@0.5 |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in results.values():
        for kind, label in (("overlap", "overlapping (Table 2)"), ("flattened", "flattened (Table 4)")):
            s = r["scores"][kind]
            o, n = s["overlapping"], s["non_overlapping"]
            lines.append(f"| {r['label']} | {label} | {pct(o['recall'])} | {pct(n['recall'])} | "
                         f"{o['n']} / {n['n']} | {pct(s['all']['f1'])} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["cellpose", "maskrcnn", "yolo"])
    parser.add_argument("--images-train", type=int, default=8, help="training images (default 8)")
    parser.add_argument("--images-test", type=int, default=4, help="test images (default 4)")
    parser.add_argument("--size", type=shape_arg, default=FULL, help="HEIGHTxWIDTH of synthetic images "
                        "(default 1944x2592, the real size; smaller for a quick run)")
    parser.add_argument("--cells-per-image", type=int, help=f"mean cells per synthetic image (default {CELLS_FULL} "
                        "at full size, scaled with the image area so density stays)")
    parser.add_argument("--data", help="an existing Glioma C6 folder (synthetic or real) instead of synthesising")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "cellbench-overlap-recall"),
                        help="where the synthetic set and the model directories go (reused across runs)")
    parser.add_argument("--configs", default=str(REPO / "examples" / "configs" / "overlap"),
                        help="folder of <method>.yaml settings (default examples/configs/overlap)")
    parser.add_argument("--flatten", default="priority-last", help="policy of the flattened GT scored against")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse-models", action="store_true",
                        help="predict with the model directories an earlier run left in --workdir instead of training")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.images_train < 1 or args.images_test < 1:
        parser.error("--images-train and --images-test must be at least 1")
    if args.cells_per_image is None:
        args.cells_per_image = max(1, round(CELLS_FULL * args.size[0] * args.size[1] / (FULL[0] * FULL[1])))
    policy_from_name(args.flatten)

    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    print(f"overlap recall benchmark: cpus {os.cpu_count()}, torch threads {threads}, load {load():.1f}")
    data = Path(args.data) if args.data else synthetic_set(args)
    train, test = read_split(data, "train", args.images_train), read_split(data, "test", args.images_test)
    n_cells = sum(len(s.instances) for s in test)
    n_over = sum(s.instances.n_overlapping for s in test)
    print(f"train {len(train)} image(s), {sum(len(s.instances) for s in train)} cells; test {len(test)} image(s) "
          f"{test[0].instances.shape}, {n_cells} cells, {n_over} overlapping another cell (before the "
          f"{BOUNDARY_PX} px boundary rule)")

    refs = references(test, args.flatten)
    print("\nreference rows (no training), in %:\n" + markdown_table(refs))
    results, skipped = {}, []
    for name in args.methods:
        reason = skip_reason(name)
        if reason:
            print(f"\nskipped {reason}")
            skipped.append(reason)
            continue
        results[name] = run_method(name, train, test, args)
        sys.stdout.flush()

    table = markdown_table({**refs, **results})
    print(f"\nRecall at IoU {THRESHOLD} ({BOUNDARY_PX} px boundary rule, {len(test)} test image(s), "
          f"GT flattened by {args.flatten}), in %:\n\n{table}\n")
    for name, r in results.items():
        loads = " -> ".join(f"{v:.1f}" for v in r["load_avg"])
        trained = "reused" if r["train_wall_s"] is None else f"{r['train_wall_s']:.0f} s wall / {r['train_cpu_s']:.0f} s CPU"
        print(f"{name}: train {trained}, predict "
              f"{r['predict_wall_s']:.0f} s wall / {r['predict_cpu_s']:.0f} s CPU, load average {loads}")
    if args.out:
        record = {"benchmark": "overlap_recall", "iou_threshold": THRESHOLD, "boundary_px": BOUNDARY_PX,
                  "flatten": args.flatten, "data": str(data), "size": list(args.size),
                  "cells_per_image": args.cells_per_image, "seed": args.seed,
                  "train_images": [s.name for s in train], "test_images": [s.name for s in test],
                  "references": refs, "methods": results, "skipped": skipped, "markdown": table}
        atomic_write_bytes(Path(args.out), json.dumps(record, indent=2, default=str).encode())
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
