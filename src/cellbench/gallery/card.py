"""Model cards: what a gallery says about a model, built from its model directory and (optionally) its run.

A card (JSON, format ``cellbench-model-card``) holds the method and its
version, the full config, what the model was trained on (dataset, split,
task, images, cells, modality, nuclei / whole cell, channels), its training
time standardised as in the 18-methods paper, held-out scores taken from a
run's results database, licence, citation and the cellbench versions that
trained and published it.

**A score never travels without what produced it.** Every entry of
``scores`` carries the dataset, split, task, ground truth, boundary rule,
IoU thresholds, matching rule, aggregation and image count beside the
numbers, and :func:`check_card` refuses a card where one is missing; the
renderers (:mod:`cellbench.gallery.render`) print them on the same row.

**Standardised training time Ts** (18-methods paper, Methods, "Scalability"):
with T the training wall time (seconds on the machine that trained, recorded
beside), B the batch size, E the number of epochs, I the number of
iterations and N the number of training images,

* ``Ts = T * (B / 8) * (50 / E)`` for a method that trains for E epochs,
* ``Ts = T * (B / 8) * (50 * N / (I * B))`` for one that trains for I iterations,

that is T rescaled to 50 epochs at batch size 8. B includes gradient
accumulation (``batch_size * grad_accum``, the batch the optimiser sees).
A method that has neither (the watershed baseline searches its parameters)
gets ``Ts = T`` and says so. Ts depends on the hardware: compare Ts of models
trained on the same machine.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cellbench import __version__
from cellbench.errors import DataError
from cellbench.methods.model_dir import MODEL_FILE, load_model

__all__ = ["CARD_FORMAT", "CARD_VERSION", "HEADLINE", "check_card", "held_out_scores", "model_card",
           "primary_score", "standardised_time"]

CARD_FORMAT = "cellbench-model-card"
CARD_VERSION = 1

#: The metrics a card shows: (name as the papers write it, IoU threshold, key in the evaluation result).
HEADLINE: tuple[tuple[str, float, str], ...] = (
    ("F1@0.5", 0.5, "f1"),
    ("ap_dsb@0.5", 0.5, "ap_dsb"),
    ("ap_dsb@0.75", 0.75, "ap_dsb"),
    ("ap_dsb@0.9", 0.9, "ap_dsb"),
)
#: COCO figures shown when the run computed them (the method gives scores).
COCO_METRICS = ("map", "ap50", "ap75", "ar50", "ar75")
#: What every score entry must say besides its numbers.
SETTING_KEYS = ("dataset", "split", "task", "ground_truth", "boundary_px", "thresholds", "n_images", "matching",
                "aggregation")

_EPOCH_KEYS = ("n_epochs", "epochs", "num_epochs", "max_epochs")
_ITER_KEYS = ("iterations", "n_iterations", "num_iterations", "max_iter", "n_iter", "train_steps")
_BATCH_KEYS = ("batch_size", "train_batch_size")
_ACCUM_KEYS = ("grad_accum", "gradient_accumulation", "accumulate_grad_batches")


def _find(config: Mapping, keys: Sequence[str]) -> int | None:
    """The first positive integer under one of ``keys``: at the top of ``config``, then in ``train``, then anywhere."""
    scopes = [config]
    if isinstance(config.get("train"), Mapping):
        scopes.append(config["train"])
    scopes += [v for k, v in config.items() if isinstance(v, Mapping) and k != "train"]
    for scope in scopes:
        for key in keys:
            value = scope.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def standardised_time(wall_s: float | None, config: Mapping, n_images: int) -> dict:
    """Ts of the 18-methods paper from the training wall time and the method's config.

    >>> standardised_time(100.0, {"n_epochs": 25, "batch_size": 16}, 10)["ts_s"]
    400.0
    >>> standardised_time(100.0, {"train": {"iterations": 1000, "batch_size": 4}}, 20)["ts_s"]
    12.5
    >>> standardised_time(3.0, {"sigmas": [1.0]}, 3)["basis"]
    'none'
    """
    batch = _find(config, _BATCH_KEYS)
    if batch is not None:
        batch *= _find(config, _ACCUM_KEYS) or 1
    epochs, iterations = _find(config, _EPOCH_KEYS), _find(config, _ITER_KEYS)
    out: dict[str, Any] = {"t_s": wall_s, "batch_size": batch, "epochs": epochs, "iterations": iterations,
                           "n_images": n_images}
    if wall_s is None:
        return {**out, "ts_s": None, "basis": "unknown", "formula": "no training time recorded"}
    if epochs is not None and batch is not None:
        return {**out, "ts_s": wall_s * (batch / 8) * (50 / epochs), "basis": "epochs",
                "formula": "Ts = T * (B / 8) * (50 / E)"}
    if iterations is not None and batch is not None and n_images > 0:
        return {**out, "ts_s": wall_s * (batch / 8) * (50 * n_images / (iterations * batch)), "basis": "iterations",
                "formula": "Ts = T * (B / 8) * (50 N / (I B))"}
    return {**out, "ts_s": wall_s, "basis": "none",
            "formula": "Ts = T (the method trains without epochs or iterations of a batch size)"}


# --- scores from a run ------------------------------------------------------------------------------------
def _run_db(run: str | Path) -> Path:
    run = Path(run)
    db = run / "results.sqlite" if run.is_dir() else run
    if not db.is_file():
        raise DataError("no results database (results.sqlite) in this run folder", path=run)
    return db


def _weights_of(model_json: Path) -> dict | None:
    try:
        return json.loads(model_json.read_text()).get("weights")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _find_entry(store, run_id: int, record: dict, db: Path):
    """The grid entry of ``store`` that trained the model whose ``model.json`` is ``record``.

    The runner records the entry key in ``model.json``; a copy of the model
    is recognised by its weight checksums, compared with the run's cached
    model of that entry (or of every entry when the key is absent).
    """
    entries = {e.key: e for e in store.entries(run_id)}
    key = ((record.get("extra") or {}).get("runner") or {}).get("entry_key")
    cache = db.parent / "cache"
    candidates = [key] if key in entries else list(entries)
    for k in candidates:
        cached = _weights_of(cache / k / "model" / MODEL_FILE)
        if cached is not None and cached == record["weights"]:
            return entries[k]
        if cached is None and k == key and not cache.is_dir():
            return entries[k]  # a database copied without its cache: trust the recorded key
    raise DataError("this model was not trained by this run: no grid entry's model has the same weights "
                    "(checksums in model.json)", path=db)


def _metric_block(result: Mapping, scope: str) -> dict:
    block = result.get(scope) or {}
    out = {}
    for name, threshold, key in HEADLINE + (("precision@0.5", 0.5, "precision"), ("recall@0.5", 0.5, "recall")):
        for thr, metrics in block.items():
            if abs(float(thr) - threshold) < 1e-9 and metrics.get(key) is not None:
                out[name] = float(metrics[key])
    return out


def held_out_scores(run: str | Path, record: dict) -> tuple[list[dict], dict]:
    """Scores of the model in ``record`` (a ``model.json``) from run folder ``run``, each with its settings;
    and the training facts the run knows (wall time, machine, the grid entry)."""
    from cellbench.runner.store import ResultStore

    db = _run_db(run)
    with ResultStore.open_readonly(db) as store:
        runs = store.runs()
        if not runs:
            raise DataError("results database holds no run", path=db)
        run_rec = runs[0]
        entry = _find_entry(store, run_rec.run_id, record, db)
        if entry.status != "done":
            raise DataError(f"grid entry {entry.label} failed in this run; it has no scores", path=db)
        evaluations = store.evaluations(run_rec.run_id).get(entry.key, ())
        invocation = next((i for i in store.invocations(run_rec.run_id) if i.invocation_id == entry.invocation_id),
                          None)
    dataset = entry.config.get("dataset") or {}
    not_held_out = {dataset.get("train"), dataset.get("valid")} - {None}
    scores = []
    for ev in evaluations:
        result = ev.result
        coco = {k: result["coco"][k] for k in COCO_METRICS if (result.get("coco") or {}).get(k) is not None}
        scores.append({
            "dataset": entry.dataset,
            "layout": dataset.get("layout"),
            "split": ev.split or "all",
            "task": entry.task,
            "held_out": ev.split not in not_held_out,
            "ground_truth": ev.ground_truth,
            "flatten_policy": ev.flatten_policy,
            "boundary_px": ev.boundary_px,
            "thresholds": list(ev.thresholds),
            "n_images": ev.n_images,
            "matching": (result.get("settings") or {}).get("matching", "optimal one-to-one at IoU >= t"),
            "aggregation": "pooled: TP, FP, FN summed over images, then the ratios; "
                           "image_mean: the ratios per image, then their mean",
            "setting": ev.setting(),
            "pooled": _metric_block(result, "pooled"),
            "image_mean": _metric_block(result, "image_mean"),
            "coco": coco or None,
            "coco_note": result.get("coco_skipped") or (None if coco else "not computed in this run"),
            "source": {"run": str(db.parent.resolve()), "run_name": run_rec.name, "entry": entry.label,
                       "entry_key": entry.key, "regime": entry.regime, "seed": entry.seed},
        })
    training = {
        "wall_s": entry.training.wall_s if entry.training else None,
        "machine": _machine(invocation.environment) if invocation else None,
        "entry": entry.label,
    }
    return scores, training


def _machine(env: Mapping) -> dict:
    keep = ("host", "platform", "machine", "cpu_count", "python")
    return {k: env[k] for k in keep if k in env} | {"torch": (env.get("packages") or {}).get("torch")}


# --- the card ----------------------------------------------------------------------------------------------
def _training_data(record: dict, *, modality: str | None, target: str | None, channels: str | None,
                   dataset: str | None) -> dict:
    train = record.get("train") or {}
    source = train.get("source") or {}
    shapes = sorted({tuple(i.get("shape", ())) for i in train.get("images") or ()})
    config_channels = record.get("config", {}).get("channels")
    return {
        "dataset": dataset or (Path(source["path"]).name if source.get("path") else None),
        "layout": source.get("layout"),
        "split": source.get("split"),
        "task": source.get("task"),
        "classes": source.get("classes") or sorted((train.get("per_class") or {})),
        "images": train.get("n_images"),
        "cells": train.get("n_instances"),
        "cells_per_class": train.get("per_class") or {},
        "image_sizes": [list(s) for s in shapes],
        "valid_split": source.get("valid_split"),
        "modality": modality,
        "target": target,
        "channels": channels or (f"Cellpose channels {list(config_channels)}" if config_channels else None),
    }


def model_card(
    model_dir: str | Path,
    *,
    name: str,
    run: str | Path | None = None,
    licence: str | None = None,
    citation: str | None = None,
    modality: str | None = None,
    target: str | None = None,
    channels: str | None = None,
    dataset: str | None = None,
    description: str = "",
    authors: Sequence[str] = (),
) -> dict:
    """The card of the model in ``model_dir`` (loaded, so its weights are checked), scored from ``run``."""
    model = load_model(model_dir)
    record = model.record
    scores, run_training = held_out_scores(run, record) if run is not None else ([], {})
    data = _training_data(record, modality=modality, target=target, channels=channels,
                          dataset=dataset or (scores[0]["dataset"] if scores else None))
    history = record.get("history") or {}
    wall = run_training.get("wall_s")
    if wall is None:
        wall = ((record.get("extra") or {}).get("runner") or {}).get("train_wall_s", history.get("wall_s"))
    epochs = history.get("epochs") or []
    last = epochs[-1] if epochs else {}
    card = {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "name": name,
        "description": description,
        "authors": list(authors),
        "method": {"name": record["method"], "version": str(record["method_version"]),
                   "description": type(model.method).description},
        "cellbench_version": {"trained_with": record.get("cellbench_version"), "published_with": __version__},
        "published_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": record["config"],
        "tiling": record.get("tiling"),
        "flatten": record.get("flatten"),
        "seed": record.get("seed"),
        "weights": record["weights"],
        "training_data": data,
        "training": {
            **standardised_time(wall, record["config"], int(data["images"] or 0)),
            "machine": run_training.get("machine"),
            "final_loss": last.get("loss"),
            "val_metric": history.get("val_metric"),
            "val_score": last.get("val_score"),
            "recorded_epochs": len(epochs),
        },
        "scores": scores,
        "licence": licence,
        "citation": citation,
    }
    check_card(card)
    return card


def check_card(card: Any, *, source: str | Path | None = None) -> dict:
    """``card`` if it is a card this cellbench reads, with every score beside its data and settings."""
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise DataError(f"not a cellbench model card (format must be {CARD_FORMAT!r})", path=source)
    if not isinstance(card.get("format_version"), int) or card["format_version"] > CARD_VERSION:
        raise DataError(f"model card format version {card.get('format_version')!r} is newer than cellbench "
                        f"{__version__} reads ({CARD_VERSION})", path=source)
    for key in ("name", "method", "config", "training_data", "training", "scores"):
        if key not in card:
            raise DataError(f"model card lacks {key!r}", path=source)
    for k, score in enumerate(card["scores"]):
        missing = [key for key in SETTING_KEYS if score.get(key) in (None, "", [])]
        if missing:
            raise DataError(f"score {k} of the model card lacks its settings {missing}: a score is never shown "
                            f"without the data and settings that produced it", path=source)
    return card


def primary_score(card: Mapping) -> dict | None:
    """The score a gallery sorts by: the first held-out evaluation, against overlapping ground truth if any."""
    held = [s for s in card.get("scores") or () if s.get("held_out")]
    held.sort(key=lambda s: s.get("ground_truth") != "overlap")
    return held[0] if held else None
