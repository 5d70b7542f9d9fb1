"""The gallery index: one entry per model, in SegGal's order, with the numbers it is sorted by.

``index.json`` (format ``cellbench-gallery``) lists every model of a gallery
folder: what it segments (modality, nuclei / whole cell, channels), what it was
trained on, its archive (path, sha256, size), its card, and three sort keys:

* ``accuracy``: F1 at IoU 0.5 (pooled over images) of the model's first
  held-out evaluation, always with that evaluation's data and settings
  (``accuracy.setting``); None when the card has no held-out score;
* ``ts_s``: the standardised training time Ts (:mod:`cellbench.gallery.card`);
  lower is faster;
* ``overall``: as the 18-methods paper ranks methods, the mean of accuracy and
  scalability, where scalability = 1 - Phi(z(Ts)), z-scored over the models of
  the same group (modality, nuclei / whole cell, channels) since only those
  compete, and Phi the standard normal CDF. None when accuracy or Ts is missing.

The SegGal order groups models by modality, then nuclei / whole cell, then
channels, then training data, then method (then name).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from cellbench.gallery.card import primary_score

__all__ = ["INDEX_FORMAT", "INDEX_VERSION", "SORT_KEYS", "SortKey", "group_of", "index_entry", "ordered",
           "with_overall"]

INDEX_FORMAT = "cellbench-gallery"
INDEX_VERSION = 1

SortKey = Literal["seggal", "accuracy", "speed", "overall", "name"]
SORT_KEYS: tuple[str, ...] = ("seggal", "accuracy", "speed", "overall", "name")

_UNKNOWN = "unspecified"


def index_entry(card: Mapping, *, archive: Mapping, files: Mapping) -> dict:
    """The index entry of a published model: the card's summary plus where its files are."""
    data = card["training_data"]
    best = primary_score(card)
    accuracy = None
    if best is not None and best["pooled"].get("F1@0.5") is not None:
        accuracy = {"metric": "F1@0.5", "value": best["pooled"]["F1@0.5"], "aggregation": "pooled",
                    "dataset": best["dataset"], "split": best["split"], "task": best["task"],
                    "n_images": best["n_images"], "ground_truth": best["ground_truth"],
                    "boundary_px": best["boundary_px"], "setting": best["setting"]}
    return {
        "name": card["name"],
        "description": card.get("description", ""),
        "method": card["method"]["name"],
        "method_version": card["method"]["version"],
        "modality": data.get("modality") or _UNKNOWN,
        "target": data.get("target") or _UNKNOWN,
        "channels": data.get("channels") or _UNKNOWN,
        "dataset": data.get("dataset") or _UNKNOWN,
        "task": data.get("task") or "all",
        "train_split": data.get("split"),
        "train_images": data.get("images"),
        "train_cells": data.get("cells"),
        "accuracy": accuracy,
        "ts_s": card["training"].get("ts_s"),
        "ts_basis": card["training"].get("basis"),
        "licence": card.get("licence"),
        "cellbench_version": card["cellbench_version"]["published_with"],
        "published_at": card.get("published_at"),
        "archive": dict(archive),
        "card": dict(files),
    }


def group_of(entry: Mapping) -> tuple[str, str, str]:
    """The SegGal group of an entry: (modality, nuclei / whole cell, channels)."""
    return (entry["modality"], entry["target"], entry["channels"])


def _last(value: str) -> tuple[bool, str]:
    return (value == _UNKNOWN, value.lower())


def _seggal_key(e: Mapping) -> tuple:
    return (*(_last(v) for v in group_of(e)), _last(e["dataset"]), e["task"], e["method"], e["name"])


def _accuracy(e: Mapping) -> float | None:
    return e["accuracy"]["value"] if e.get("accuracy") else None


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def with_overall(entries: Iterable[Mapping]) -> list[dict]:
    """Entries with ``scalability`` and ``overall`` computed over their group (see the module docstring)."""
    entries = [dict(e) for e in entries]
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        groups.setdefault(group_of(e), []).append(e)
    for members in groups.values():
        times = [e["ts_s"] for e in members if e.get("ts_s") is not None]
        mean = sum(times) / len(times) if times else 0.0
        std = math.sqrt(sum((t - mean) ** 2 for t in times) / (len(times) - 1)) if len(times) > 1 else 0.0
        for e in members:
            if e.get("ts_s") is None:
                e["scalability"] = None
            else:
                e["scalability"] = 1.0 - _phi((e["ts_s"] - mean) / std) if std > 0 else 0.5
            acc = _accuracy(e)
            e["overall"] = None if acc is None or e["scalability"] is None else (acc + e["scalability"]) / 2
    return entries


def ordered(entries: Sequence[Mapping], sort: SortKey = "seggal") -> list[dict]:
    """Entries in SegGal order, or by ``accuracy`` / ``overall`` (best first), ``speed`` (lowest Ts first)
    or ``name``; entries without the sort value come last, in SegGal order.

    >>> es = [{"name": n, "modality": "fluorescence", "target": "nuclei", "channels": "1", "dataset": "d",
    ...        "task": "all", "method": "m", "ts_s": t, "accuracy": None} for n, t in (("a", 5.0), ("b", 2.0))]
    >>> [e["name"] for e in ordered(es, "speed")]
    ['b', 'a']
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; one of {', '.join(SORT_KEYS)}")
    base = sorted((dict(e) for e in entries), key=_seggal_key)
    if sort == "seggal":
        return base
    if sort == "name":
        return sorted(base, key=lambda e: e["name"])
    value = {"accuracy": _accuracy, "overall": lambda e: e.get("overall"),
             "speed": lambda e: None if e.get("ts_s") is None else -e["ts_s"]}[sort]
    have = [e for e in base if value(e) is not None]
    return sorted(have, key=value, reverse=True) + [e for e in base if value(e) is None]
