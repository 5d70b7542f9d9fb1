"""``cellbench methods``, ``cellbench train`` and ``cellbench predict``.

``train`` reads a dataset, trains a method and writes a model directory
(:mod:`cellbench.methods.model_dir`); ``predict`` loads one and writes a label
TIFF per image (flattened by the model's policy, recorded in the TIFF) plus a
COCO json with scores when the method gives scores or overlapping instances.
Both output folders are written all or nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shutil
import sys
from pathlib import Path

from cellbench.data import LAYOUTS
from cellbench.data.layouts import read_with_options
from cellbench.data.dataset import Sample
from cellbench.data.images import image_files, missing_path
from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, check_output_dir, staged_dir
from cellbench.instances import FLATTEN_NAMES, policy_from_name
from cellbench.methods import METHODS, get_method, missing_requirements, unmet_requirements
from cellbench.cli.estimate import CostEstimate, format_duration
from cellbench.methods.base import config_from_dict, merge_config
from cellbench.methods.checkpoint import check_leftover
from cellbench.methods.config_file import read_config_file
from cellbench.methods.model_dir import MODEL_FILE, load_model
from cellbench.methods.tiling import (
    TileConfig, method_tiling, move_old_tiling_keys, override_tiling, slide_tiling,
)
from cellbench.methods.training import needs_class_models, select_training, train_model

__all__ = ["add_method_commands"]

PREDICT_MANIFEST = "cellbench-predict.json"
#: Index of the model directories ``cellbench train --per-class`` writes, one per class.
CLASS_MODELS_FILE = "classes.json"
CLASS_MODELS_FORMAT = "cellbench-class-models"


def _progress():
    """tqdm on a terminal, silent otherwise (a factory, as the methods take it)."""
    from tqdm import tqdm  # here, as every import this parser does not need: each `cellbench` command pays for them

    return functools.partial(tqdm, disable=not sys.stderr.isatty(), file=sys.stderr)


def _method_class(name: str):
    cls = get_method(name)
    unmet = unmet_requirements(cls)
    if unmet:
        raise DataError(f"method {name!r} {unmet}")
    return cls


def _read(args: argparse.Namespace, split: str | None):
    return read_with_options(args.data, args.layout, split=split, task=args.task, invalid=args.invalid_polygons,
                             channels=args.channels, image_dir=args.image_dir)


def _tiling(args: argparse.Namespace, cls, from_file: dict | None, config) -> TileConfig:
    """The config file's ``tiling`` over the method's default for ``config``, then ``--tile`` / ``--overlap``."""
    given = {k: v for k, v in (("tile", args.tile), ("overlap", args.overlap)) if v is not None}
    if from_file is None or isinstance(from_file, dict):  # anything else: method_tiling says what is wrong
        from_file = {**(from_file or {}), **given}
    return method_tiling(cls, from_file, config=config, source=args.config)


def _config_values(cls, args: argparse.Namespace) -> dict:
    """The preset (``--preset``) with the config file (``--config``) merged over it (a file's old
    ``tile`` / ``tile_overlap`` read as its ``tiling``)."""
    values = move_old_tiling_keys(cls, read_config_file(args.config), source=args.config) if args.config else {}
    if args.preset is None:
        return values
    if args.preset not in cls.presets:
        raise DataError(f"method {cls.name!r} has no preset {args.preset!r}; presets: {sorted(cls.presets) or 'none'}")
    return merge_config(cls.presets[args.preset], values)


def _on_cpu_only(cls) -> bool:
    """True when this method will train on the CPU (no CUDA device, or a method without torch)."""
    if "torch" not in cls.requires:
        return True
    import torch

    return not torch.cuda.is_available()


def _cost_notice(cls, args: argparse.Namespace):
    """What ``train`` says once the first steps show what the chosen settings cost on this CPU."""

    def notice(seconds: float, measured: str) -> None:
        hint = ""
        if "cpu" in cls.presets and args.preset != "cpu":
            hint = (f" The published defaults of {cls.name} assume a GPU; `--preset cpu` holds settings chosen "
                    f"to finish on a CPU (`cellbench methods` lists them).")
        print(f"cellbench: training {cls.name} on the CPU: after {measured}, the whole training needs about "
              f"{format_duration(seconds)} here.{hint}", file=sys.stderr, flush=True)

    return notice


def _train(args: argparse.Namespace) -> int:
    cls = _method_class(args.method)
    # before hours of training, not after; --per-class --resume goes on in its half-filled folder
    check_output_dir(args.out, overwrite=args.overwrite or (args.per_class and args.resume))
    if cls.resumable and not args.per_class:
        check_leftover(args.out, resume=args.resume, overwrite=args.overwrite)
    elif args.resume and not cls.resumable:
        print(f"cellbench: {cls.name} keeps no per-epoch checkpoint; --resume trains it from the start",
              file=sys.stderr)
    values = _config_values(cls, args)
    tiling_values = values.pop("tiling", None)
    try:
        config = config_from_dict(cls.Config, values, source=args.config)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"bad {args.method} config: {exc}", path=args.config) from exc
    tiling = _tiling(args, cls, tiling_values, config)
    dataset = _read(args, args.split)
    if args.images is not None and args.images < 1:
        raise DataError(f"--images must be at least 1, got {args.images}")
    samples = select_training(dataset.samples, args.images, where=args.data)
    valid = list(_read(args, args.valid_split).samples) if args.valid_split else None
    progress = _progress()
    if _on_cpu_only(cls):
        progress = CostEstimate(progress, _cost_notice(cls, args))
    source = {"path": str(Path(args.data).resolve()), "layout": args.layout, "split": args.split,
              "task": dataset.task, "classes": list(dataset.classes), "images_limit": args.images,
              "valid_split": args.valid_split, "n_valid_images": len(valid) if valid else 0}
    if args.per_class:
        return _train_per_class(args, cls, config, tiling, dataset.classes, samples, valid, source, progress)
    history, _ = train_model(cls(config), samples, valid, out=args.out, seed=args.seed, tiling=tiling, source=source,
                             progress=progress, resume=args.resume, overwrite=args.overwrite)
    last = history.epochs[-1] if history.epochs else None
    score = f", validation {history.val_metric} {last.val_score:.3f}" if last and last.val_score is not None else ""
    print(f"trained {args.method} on {len(samples)} image(s) in {history.wall_s or 0:.1f} s"
          f"{f', final loss {last.loss:.4f}' if last else ''}{score}; model in {args.out}")
    return 0


def _train_per_class(args: argparse.Namespace, cls, config, tiling: TileConfig, classes: tuple[str, ...],
                     samples: list, valid: list | None, source: dict, progress) -> int:
    """``--per-class``: one model directory per class of the task in ``--out`` (as ``cellbench run`` trains them).

    ``<out>/class<k>/`` is the model of class k, trained on that class's instances alone; ``<out>/classes.json``
    (written last) names them in order. A class model already written is kept with ``--resume``; a resumable
    method keeps the checkpoint of the class it is training in ``<out>/class<k>.checkpoint/``.
    """
    if not needs_class_models(cls, classes):
        why = (f"{cls.name} learns every class in one model" if getattr(cls, "supports_classes", False)
               else f"the task has one class ({', '.join(classes)})")
        raise DataError(f"--per-class: {why}; train without --per-class")
    out = Path(args.out)
    index = out / CLASS_MODELS_FILE
    if index.exists() and not args.overwrite:
        raise DataError("holds finished per-class models; pass --overwrite to train them again", path=out)
    if args.overwrite and not args.resume:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    index.unlink(missing_ok=True)
    names = []
    for k, name in enumerate(classes):
        folder = out / f"class{k}"
        names.append(folder.name)
        if args.resume and (folder / MODEL_FILE).is_file():
            print(f"cellbench: class {name!r} was trained before; kept {folder}", file=sys.stderr)
            continue
        history, _ = train_model(cls(config), samples, valid, out=folder, seed=args.seed, tiling=tiling,
                                 source={**source, "class": name}, only=name, progress=progress, resume=args.resume,
                                 overwrite=True)
        print(f"trained {args.method} on the {name!r} instances of {len(samples)} image(s) in "
              f"{history.wall_s or 0:.1f} s; model in {folder}")
    record = {"format": CLASS_MODELS_FORMAT, "method": cls.name, "classes": list(classes), "models": names}
    atomic_write_bytes(index, json.dumps(record, indent=2).encode())
    print(f"one {args.method} model per class ({', '.join(classes)}) in {out}")
    return 0


def _image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise missing_path(path, "image file or folder not found")
    files = image_files(path)
    if not files:
        raise DataError("no image files (.tif, .png, .jpg, .bmp) in folder", path=path)
    stems = [p.stem for p in files]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise DataError(f"several images share a name stem {repeated}; outputs would collide", path=path)
    return files


def _predict(args: argparse.Namespace) -> int:
    from cellbench.cli.gallery import resolve_model_argument
    from cellbench.data.export import to_coco
    from cellbench.data.export.labels import write_instance_labels
    from cellbench.data.image_file import ImageFile, open_image

    args.model = resolve_model_argument(args.model, args.gallery)  # gallery:NAME -> the model pulled into the cache
    if (Path(args.model) / CLASS_MODELS_FILE).is_file():
        raise DataError(f"holds one model per class (cellbench train --per-class, listed in {CLASS_MODELS_FILE}); "
                        f"predict with each class's model directory, class<k>/", path=args.model)
    model = load_model(args.model)
    given = {k: v for k, v in (("tile", args.tile), ("overlap", args.overlap)) if v is not None}
    if given:  # the same rule as a training config's tiling, over the tiling the model recorded
        model = dataclasses.replace(model, tiling=override_tiling(model.tiling, given))
    policy = policy_from_name(args.flatten) if args.flatten else model.flatten
    files = _image_files(Path(args.images))
    progress = _progress()
    samples, entries = [], []
    with staged_dir(args.out, overwrite=args.overwrite) as tmp:
        (tmp / "labels").mkdir()
        for path in progress(files, desc="predicting", unit="image"):
            image = open_image(path)  # a whole slide is read tile by tile, as it is predicted
            tiling = slide_tiling(model.tiling) if isinstance(image, ImageFile) and not given else model.tiling
            retiled = tiling != model.tiling
            if retiled:
                print(f"cellbench: {path.name} ({image.shape[0]} x {image.shape[1]}) is read a window at a time: "
                      f"predicted in {tiling.tile} px tiles, {tiling.overlap} px overlap, instead of whole "
                      f"(--tile / --overlap to choose)", file=sys.stderr)
            try:
                instances = dataclasses.replace(model, tiling=tiling).predict(image, progress=progress)
            finally:
                if isinstance(image, ImageFile):
                    image.close()
            lost = write_instance_labels(tmp / "labels" / f"{path.stem}.tif", instances, policy,
                                         extra={"image": path.name, "method": model.name,
                                                "model": str(Path(args.model))})
            samples.append(Sample(path.stem, instances, image_path=path))
            entries.append({"image": path.name, "labels": f"labels/{path.stem}.tif", "n_instances": len(instances),
                            "n_overlapping": instances.n_overlapping, "lost_in_flatten": list(lost),
                            **({"tiling": tiling.to_dict()} if retiled else {})})
        scored = any(s.instances.scores is not None and len(s.instances) for s in samples)
        overlapping = any(e["n_overlapping"] for e in entries)
        manifest = {
            "model": str(Path(args.model).resolve()),
            "method": model.name,
            "method_version": model.record.get("method_version"),
            "tiling": model.tiling.to_dict(),
            "flatten": {"policy": policy.name, "params": policy.params()},
            "images": entries,
            "coco": "predictions.json" if scored or overlapping else None,
        }
        if manifest["coco"]:
            classes = samples[0].instances.classes if samples else ("cell",)
            coco = to_coco(samples, classes, info={"cellbench": {k: manifest[k] for k in ("model", "method", "tiling")}})
            atomic_write_bytes(tmp / "predictions.json", json.dumps(coco).encode())
        (tmp / PREDICT_MANIFEST).write_text(json.dumps(manifest, indent=2))
    n = sum(e["n_instances"] for e in entries)
    coco_note = " and predictions.json (COCO, with scores)" if manifest["coco"] else ""
    print(f"predicted {n} instances in {len(files)} image(s) with {model.name}; label TIFFs "
          f"(flatten {policy.name}){coco_note} in {args.out}")
    return 0


#: Methods of the NeurIPS-2022 report (issue 14) and the 18-methods paper (issue 26) that cellbench
#: cannot offer, and why.
UNAVAILABLE: dict[str, str] = {
    "lstm-unet": "not available: LSTM-UNet's code is hosted on GitLab, which cannot be reached from here",
    "sac": "not available: SAC's code was only sent by e-mail on request, it is not public",
    # the 18-methods paper's RF-Next (issue 26)
    "rf-next": "not available: RF-Next is a receptive-field search (a genetic global search, then an iterative "
               "local search of every convolution's dilation rates) run over another detector, here Mask R-CNN, "
               "through repeated trainings; the rates the paper found for cells are not published and its code "
               "is MMCV's rfsearch hook (compiled mmcv, no wheel on this stack): use maskrcnn for its base",
}


def _methods(args: argparse.Namespace) -> int:
    rows = []
    for name in sorted(METHODS):
        try:
            cls = get_method(name)
        except DataError as exc:
            rows.append({"name": name, "installed": False, "description": "", "requires": [], "missing": [],
                         "extra": None, "error": exc.problem})
            continue
        missing = missing_requirements(cls.requires)
        rows.append({"name": name, "installed": not missing, "description": cls.description,
                     "requires": list(cls.requires), "missing": missing, "extra": cls.extra,
                     "version": str(cls.version), "presets": dict(cls.presets), "resumable": bool(cls.resumable),
                     "licence": cls.licence})
    for name, reason in UNAVAILABLE.items():
        rows.append({"name": name, "installed": False, "available": False, "description": "", "requires": [],
                     "missing": [], "extra": None, "error": reason})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if row.get("available") is False:
            state = row["error"]
        elif row.get("error"):
            state = f"cannot be imported: {row['error']}"
        elif row["installed"]:
            state = "installed" + (f" (uses {', '.join(row['requires'])})" if row["requires"] else "")
        else:
            hint = f"; pip install 'cellbench[{row['extra']}]'" if row["extra"] else ""
            state = f"missing {', '.join(row['missing'])}{hint}"
        print(f"{row['name']:>10}  {state}")
        if row["description"]:
            print(f"{'':>10}  {row['description']}")
        if row.get("licence"):
            print(f"{'':>10}  licence: {row['licence']}")
        for preset, values in (row.get("presets") or {}).items():
            print(f"{'':>10}  --preset {preset}: {json.dumps(values)}")
        if "resumable" in row:
            print(f"{'':>10}  train --resume: " + ("continues from the last finished epoch" if row["resumable"]
                                                  else "trains again from the start (no per-epoch checkpoint)"))
    return 0


def _add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, help="tile side in px for prediction (0: whole image at once)")
    p.add_argument("--overlap", type=int, help="overlap between tiles in px")


def add_method_commands(sub: argparse._SubParsersAction) -> None:
    methods = sub.add_parser("methods", help="list the segmentation methods, installed or not, and what they need")
    methods.add_argument("--json", action="store_true", help="print one JSON list")
    methods.set_defaults(func=_methods)

    train = sub.add_parser("train", help="train a method on a dataset and write a model directory")
    train.add_argument("method", help="method name (see `cellbench methods`)")
    train.add_argument("--data", required=True,
                       help="dataset folder or file, or the name of a downloaded dataset (cellbench data list)")
    train.add_argument("--layout", choices=list(LAYOUTS), help="how --data is laid out (not for a registered name)")
    train.add_argument("--split", help="training split (glioma-c6: train; folders: a sub-folder)")
    train.add_argument("--valid-split", help="validation split of the same dataset (model selection / score)")
    train.add_argument("--task", default="all", help="classes to keep (glioma-c6: cells, soma, type-a, type-b, types)")
    train.add_argument("--images", type=int, help="train on the first N images only")
    train.add_argument("--preset", help="named settings of the method to start from (e.g. cpu; see `cellbench methods`); "
                                        "--config values go over them")
    train.add_argument("--config", help="YAML or JSON file of method settings (plus optional 'tiling')")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--invalid-polygons", choices=["raise", "skip", "keep"], default="raise")
    train.add_argument("--channels", choices=["nuclear", "whole-cell", "dual"], help="tissuenet channels")
    train.add_argument("--image-dir", help="coco: folder holding the images, if not beside the json")
    _add_tiling(train)
    train.add_argument("--out", required=True, help="model directory to write (all or nothing)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace an existing model directory (and an interrupted training's checkpoint)")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted training from its last finished epoch (methods that keep "
                            "<out>.checkpoint/; same command line otherwise)")
    train.add_argument("--per-class", action="store_true",
                       help="one model per class of the task, each on that class's instances (as `cellbench run` "
                            "trains methods that cannot classify): <out>/class<k>/ per class, <out>/classes.json")
    train.set_defaults(func=_train)

    predict = sub.add_parser("predict", help="segment images with a trained model directory")
    predict.add_argument("model", help="model directory written by `cellbench train`, or gallery:NAME (with --gallery)")
    predict.add_argument("--gallery", help="gallery folder or http(s) URL holding the gallery:NAME model")
    predict.add_argument("--images", required=True, help="an image file or a folder of images")
    predict.add_argument("--out", required=True, help="output folder (written all or nothing)")
    predict.add_argument("--flatten", choices=FLATTEN_NAMES,
                         help="policy for the label TIFFs (default: the model's)")
    _add_tiling(predict)
    predict.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    predict.set_defaults(func=_predict)
