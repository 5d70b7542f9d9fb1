"""Running one grid entry: train (or not), predict every test image, score.

:func:`run_entry` is a plain function of the grid entry and the cache folder, so
every executor (in-process, Ray worker) runs the same code and gets the same
numbers. It never raises for a failing method: the error and its traceback
are part of the returned :class:`EntryOutcome`, and the other entries go on.

A trained grid entry saves its model as a model directory
(:func:`~cellbench.methods.model_dir.save_model`) and predicts with what
:func:`~cellbench.methods.model_dir.load_model` reads back, tile by tile with
the recorded tiling (:func:`~cellbench.methods.tiling.predict_image`): exactly
what ``cellbench predict`` does with that folder. A zero-shot entry predicts
with the untrained method and the same tiling rule.
"""

from __future__ import annotations

import functools
import json
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from cellbench.data import Dataset, read_dataset
from cellbench.errors import DataError
from cellbench.instances import flatten, policy_from_name
from cellbench.methods import config_from_dict, config_to_dict
from cellbench.methods.model_dir import MODEL_FILE, LoadedModel, load_model
from cellbench.methods.tiling import TileConfig, method_tiling, predict_image
from cellbench.methods.training import needs_class_models, select_training, train_model
from cellbench.runner.cache import PredictionCache
from cellbench.runner.class_models import merge_class_predictions, training_record
from cellbench.runner.experiment import resolve_method
from cellbench.runner.grid import GridEntry
from cellbench.runner.records import EvaluationRecord

__all__ = ["EntryOutcome", "run_entry"]


@dataclass(frozen=True)
class EntryOutcome:
    """What running a grid entry gave: status, training record, evaluations and timings."""

    key: str
    label: str
    config: dict
    status: str  # "done" | "failed"
    error: str | None = None
    train: dict | None = None  # history, wall_s, images, resumed_from_cache
    evaluations: tuple[EvaluationRecord, ...] = ()
    started: float = 0.0
    finished: float = 0.0
    host: str = field(default_factory=platform.node)

    def to_dict(self) -> dict:
        return asdict(self)


def _read(entry: GridEntry, split: str | None) -> Dataset:
    d = entry.dataset
    layout = None if d.registered else d.layout  # a registered name reads with its own layouts
    return read_dataset(d.path, layout, split=split, task=entry.task, **dict(d.options))


def _trained_model(entry: GridEntry, method_cls: type, config, tiling: TileConfig, cache: PredictionCache,
                   progress, only: str | None = None) -> tuple[LoadedModel, dict]:
    """The grid entry's model, trained now or by an earlier invocation, as read back from its model
    directory; and the training record the store keeps (taken from ``model.json`` either way).
    ``only``: train on the instances of that class alone (one model per class, see ``class_models``).

    Training is :func:`~cellbench.methods.training.train_model`, as ``cellbench train`` trains: a
    resumable method keeps its per-epoch checkpoint in ``model.checkpoint/`` beside ``model/`` in the
    entry's cache folder, so a run killed mid-training continues from the last finished epoch."""
    resumed = cache.has_model()
    if not resumed:
        d = entry.dataset
        if d.train is None:
            raise DataError(f"dataset {d.name!r} has no train split, needed by regime {entry.regime.name!r}",
                            path=d.path)
        picked = select_training(_read(entry, d.train).samples, entry.regime.train_images, seed=entry.seed,
                                 where=d.path)
        valid = list(_read(entry, d.valid).samples) if d.valid is not None else None
        source = {"path": d.path, "layout": d.layout, "split": d.train, "task": entry.task,
                  "train_images": entry.regime.train_images, "valid_split": d.valid,
                  "valid_images": [s.name for s in valid or ()], "class": only}
        train_model(method_cls(config), picked, valid, out=cache.model_dir, seed=entry.seed, tiling=tiling,
                    source=source, only=only, progress=progress, resume=True, overwrite=True,
                    extra=lambda wall: {"runner": {"entry": entry.label, "entry_key": entry.key,
                                                   "train_wall_s": wall}})
        # predictions come from the model as read back, as `cellbench predict` reads it
    model = load_model(cache.model_dir, method_class=method_cls)
    record = model.record
    try:
        train = {
            "history": record["history"],
            "wall_s": record["extra"]["runner"]["train_wall_s"],
            "images": [image["name"] for image in record["train"]["images"]],
            "valid_images": record["train"]["source"]["valid_images"],
            "resumed_from_cache": resumed,
        }
    except (KeyError, TypeError) as exc:
        raise DataError(f"model.json lacks the runner's training record ({exc!r})", path=model.path / MODEL_FILE) from exc
    return model, train


def _ground_truth(samples, kind: str, policy_name: str):
    if kind == "overlap":
        return [s.instances for s in samples]
    policy = policy_from_name(policy_name)
    return [flatten(s.instances, policy).to_instance_set() for s in samples]


def _predict_per_class(models: list[LoadedModel], classes: tuple[str, ...], image: np.ndarray):
    """One classified prediction from one single-class model per class."""
    return merge_class_predictions([m.predict(image) for m in models], classes)


def run_entry(
    entry: GridEntry,
    *,
    cache_root,
    progress: Callable | None = None,
    evaluate: Callable | None = None,
) -> EntryOutcome:
    """Train, predict and score one grid entry; predictions and the model go to ``cache_root``.

    What the cache already holds (a trained model, predicted images) is used,
    not recomputed. Every image is predicted by
    :func:`~cellbench.methods.tiling.predict_image` with the method's tiling
    (``tiling`` of the experiment's method, else the method's default).
    ``evaluate`` defaults to :func:`cellbench.metrics.evaluate`.
    """
    started = time.time()
    base = {"key": entry.key, "label": entry.label, "config": entry.to_dict()}
    try:
        if evaluate is None:
            from cellbench.metrics import evaluate
        from cellbench.metrics import threshold_key
        from cellbench.metrics.classes import class_confusion
        method_cls = resolve_method(entry.method.method)
        config = config_from_dict(method_cls.Config, dict(entry.method.config), source=entry.method.name)
        tiling = method_tiling(method_cls, entry.method.tiling, config=config, source=entry.method.name)
        base["config"]["method"]["resolved_config"] = config_to_dict(config)
        base["config"]["method"]["resolved_tiling"] = tiling.to_dict()
        cache = PredictionCache(cache_root, entry.key)
        classes: tuple[str, ...] = ()
        if entry.regime.trains and entry.dataset.train is not None and not getattr(method_cls, "supports_classes",
                                                                                     False):
            classes = _read(entry, entry.dataset.train).classes  # read only for a method that cannot classify
        if needs_class_models(method_cls, classes):
            models, trains = [], {}
            for k, cname in enumerate(classes):
                model, trains[cname] = _trained_model(entry, method_cls, config, tiling,
                                                      PredictionCache(cache.folder, f"class{k}"), progress, cname)
                models.append(model)
            train = training_record(trains)
            predict = functools.partial(_predict_per_class, models, classes)
        else:
            if entry.regime.trains:
                model, train = _trained_model(entry, method_cls, config, tiling, cache, progress)
                method, tiling = model.method, model.tiling
            else:
                method, train = method_cls(config), None
            predict = functools.partial(predict_image, method, tiling=tiling)
        ev = entry.evaluation
        evaluations = []
        for test in entry.tests:
            dataset = _read(entry, test.split)
            predictions, seconds = [], 0.0
            samples = dataset.samples
            shown = progress(samples, desc=f"{entry.label} predict {test.split or 'all'}", leave=False) if progress else samples
            for sample in shown:
                cached = cache.load_prediction(test.split, sample.name)
                if cached is None:
                    image = sample.load_image()
                    t0 = time.perf_counter()
                    pred = predict(image)
                    cached = (pred, time.perf_counter() - t0)
                    cache.save_prediction(test.split, sample.name, *cached)
                predictions.append(cached[0])
                seconds += cached[1]
            names = [s.name for s in samples]
            # COCO ranks predictions by score: a method without scores gets no COCO numbers, said so.
            coco = ev.coco and all(p.scores is not None for p in predictions)
            for kind in ev.ground_truth:
                gts = _ground_truth(samples, kind, ev.flatten)
                result = evaluate(
                    gts,
                    predictions,
                    names=names,
                    thresholds=ev.thresholds,
                    boundary_px=ev.boundary_px,
                    coco=coco,
                    per_class=ev.per_class,
                    metrics=list(ev.metrics) or None,
                ).to_dict()
                if ev.coco and not coco:
                    result["coco_skipped"] = "the method gives no instance scores, which COCO ranking needs"
                if ev.per_class:
                    result["class_confusion"] = {
                        threshold_key(t): class_confusion(gts, predictions, threshold=t,
                                                          boundary_px=ev.boundary_px).to_dict()
                        for t in ev.thresholds
                    } if samples else {}
                result = json.loads(json.dumps(result, default=float))
                evaluations.append(
                    EvaluationRecord(
                        split=test.split,
                        ground_truth=kind,
                        flatten_policy=ev.flatten if kind == "flattened" else None,
                        boundary_px=ev.boundary_px,
                        thresholds=tuple(result.get("iou_thresholds", ev.thresholds)),
                        n_images=len(samples),
                        predict_wall_s=seconds,
                        result=result,
                    )
                )
        return EntryOutcome(**base, status="done", train=train, evaluations=tuple(evaluations),
                            started=started, finished=time.time())
    except Exception as exc:  # a failing grid entry is recorded, the run goes on
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return EntryOutcome(**base, status="failed", error=error, started=started, finished=time.time())
