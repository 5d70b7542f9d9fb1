"""Running one grid cell: train (or not), predict every test image, score.

:func:`run_cell` is a plain function of the cell and the cache folder, so
every executor (in-process, Ray worker) runs the same code and gets the same
numbers. It never raises for a failing method: the error and its traceback
are part of the returned :class:`CellOutcome`, and the other cells go on.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from cellbench.data import Dataset, read_dataset
from cellbench.data.export import staged_dir
from cellbench.errors import DataError
from cellbench.instances import flatten, policy_from_name
from cellbench.methods import TrainHistory, config_from_dict, config_to_dict
from cellbench.runner.cache import PredictionCache
from cellbench.runner.experiment import resolve_method
from cellbench.runner.grid import GridCell

__all__ = ["CellOutcome", "EvaluationRecord", "run_cell"]


@dataclass(frozen=True)
class EvaluationRecord:
    """Scores of one cell on one test split against one kind of ground truth."""

    split: str | None
    ground_truth: str  # "overlap" | "flattened"
    flatten_policy: str | None  # the policy that flattened the ground truth, None for overlap
    n_images: int
    predict_wall_s: float
    result: dict  # cellbench.metrics evaluate(...).to_dict()


@dataclass(frozen=True)
class CellOutcome:
    """What running a cell gave: status, training record, evaluations and timings."""

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


def _read(cell: GridCell, split: str | None) -> Dataset:
    d = cell.dataset
    return read_dataset(d.path, d.layout, split=split, task=cell.task, **dict(d.options))


def _pick_training(samples, n: int | None, seed: int, where: str):
    """``n`` training samples picked by ``seed`` (all when ``n`` is None), in name order."""
    samples = sorted(samples, key=lambda s: s.name)
    if n is None:
        return samples
    if n > len(samples):
        raise DataError(f"regime asks for {n} training images, the training split has {len(samples)}", path=where)
    picked = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(picked.tolist())]


def _train(cell: GridCell, method, cache: PredictionCache, progress) -> dict:
    if cache.has_model():
        method.load_weights(cache.model_dir / "weights")
        record = json.loads((cache.model_dir / "train.json").read_text())
        return {**record, "resumed_from_cache": True}
    d = cell.dataset
    if d.train is None:
        raise DataError(f"dataset {d.name!r} has no train split, needed by regime {cell.regime.name!r}", path=d.path)
    train = _pick_training(_read(cell, d.train).samples, cell.regime.train_images, cell.seed, d.path)
    valid = list(_read(cell, d.valid).samples) if d.valid is not None else None
    started = time.perf_counter()
    history = method.train(train, valid, seed=cell.seed, progress=progress)
    wall = time.perf_counter() - started
    if not isinstance(history, TrainHistory):
        raise TypeError(f"{type(method).__name__}.train returned {type(history).__name__}, not TrainHistory")
    record = {
        "history": history.to_dict(),
        "wall_s": wall,
        "images": [s.name for s in train],
        "valid_images": [s.name for s in valid or ()],
    }
    record = json.loads(json.dumps(record, default=float))  # plain JSON, as a cached record reads back
    with staged_dir(cache.model_dir, overwrite=True) as tmp:
        (tmp / "weights").mkdir()
        method.save_weights(tmp / "weights")
        (tmp / "train.json").write_text(json.dumps(record))
    return {**record, "resumed_from_cache": False}


def _ground_truth(samples, kind: str, policy_name: str):
    if kind == "overlap":
        return [s.instances for s in samples]
    policy = policy_from_name(policy_name)
    return [flatten(s.instances, policy).to_instance_set() for s in samples]


def run_cell(
    cell: GridCell,
    *,
    cache_root,
    progress: Callable | None = None,
    evaluate: Callable | None = None,
) -> CellOutcome:
    """Train, predict and score one cell; predictions and the model go to ``cache_root``.

    What the cache already holds (a trained model, predicted images) is used,
    not recomputed. ``evaluate`` defaults to :func:`cellbench.metrics.evaluate`.
    """
    started = time.time()
    base = {"key": cell.key, "label": cell.label, "config": cell.to_dict()}
    try:
        if evaluate is None:
            from cellbench.metrics import evaluate
        method_cls = resolve_method(cell.method.method)
        config = config_from_dict(method_cls.Config, dict(cell.method.config), source=cell.method.name)
        base["config"]["method"]["resolved_config"] = config_to_dict(config)
        method = method_cls(config)
        cache = PredictionCache(cache_root, cell.key)
        train = _train(cell, method, cache, progress) if cell.regime.trains else None
        ev = cell.evaluation
        evaluations = []
        for test in cell.tests:
            dataset = _read(cell, test.split)
            predictions, seconds = [], 0.0
            samples = dataset.samples
            shown = progress(samples, desc=f"{cell.label} predict {test.split or 'all'}", leave=False) if progress else samples
            for sample in shown:
                cached = cache.load_prediction(test.split, sample.name)
                if cached is None:
                    image = sample.load_image()
                    t0 = time.perf_counter()
                    pred = method.predict(image)
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
                ).to_dict()
                if ev.coco and not coco:
                    result["coco_skipped"] = "the method gives no instance scores, which COCO ranking needs"
                evaluations.append(
                    EvaluationRecord(
                        split=test.split,
                        ground_truth=kind,
                        flatten_policy=ev.flatten if kind == "flattened" else None,
                        n_images=len(samples),
                        predict_wall_s=seconds,
                        result=json.loads(json.dumps(result, default=float)),
                    )
                )
        return CellOutcome(**base, status="done", train=train, evaluations=tuple(evaluations),
                           started=started, finished=time.time())
    except Exception as exc:  # a failing cell is recorded, the run goes on
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return CellOutcome(**base, status="failed", error=error, started=started, finished=time.time())
