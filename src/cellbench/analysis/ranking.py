"""The 18-methods paper's ranking: accuracy, usability and scalability, normalised through the normal CDF.

As the paper's "Ranking Scheme" (Methods), for whatever models are given:

* **accuracy of a task** = the mean of COCO mAP, AP50, AP75, AR50 and AR75
  (:func:`task_accuracy`), a fraction; not normalised.
* **usability** = the mean over the three criteria (code maintenance, ease of
  use, hardware support, each scored 1-10 by hand, :data:`USABILITY_CRITERIA`)
  of the criterion's *normalised* score.
* **scalability** = 1 - the mean over tasks of the normalised standardised
  running time Ts of each task (Ts = T (B / 8) (50 / E) for epoch-based
  training; the caller computes it).
* **normalised** (:func:`normal_scores`): over the models that have a value,
  z = (x - mean) / sd with the population sd (so the z-scores have mean 0 and
  sd 1, as the paper says), then the standard normal CDF Phi(z), which maps to
  (0, 1). When every model has the same value (or only one has one) every z
  is 0 and Phi(0) = 0.5.
* **overall** = the mean of every task's accuracy, the usability and the
  scalability (the paper: five task accuracies + usability + scalability =
  seven numbers); a missing component is left out of the mean and named in
  ``missing``.

Models are ranked by overall, highest first (ties share the lower rank number;
a model without any component has no rank).

Usability scores come from a YAML file (:func:`load_usability`); cellbench
ships :data:`DEFAULT_USABILITY` (``usability.yaml`` beside this module),
scored for cellbench's methods by the paper's criteria and documented there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cellbench.errors import DataError

__all__ = [
    "ACCURACY_METRICS",
    "DEFAULT_USABILITY",
    "USABILITY_CRITERIA",
    "Ranking",
    "RankRow",
    "load_usability",
    "normal_scores",
    "rank_models",
    "ranking_rows",
    "task_accuracy",
]

#: The COCO summary keys averaged into a task's accuracy.
ACCURACY_METRICS = ("map", "ap50", "ap75", "ar50", "ar75")
#: The usability criteria of the paper, each scored 1-10 (higher is better).
USABILITY_CRITERIA = ("code_maintenance", "ease_of_use", "hardware_support")
#: The usability scores cellbench ships.
DEFAULT_USABILITY = Path(__file__).with_name("usability.yaml")


def task_accuracy(coco: Mapping | None) -> float | None:
    """Mean of mAP, AP50, AP75, AR50, AR75 of a COCO summary; None when any is missing.

    >>> task_accuracy({"map": 0.5, "ap50": 0.8, "ap75": 0.5, "ar50": 0.9, "ar75": 0.55})
    0.65
    """
    if not coco:
        return None
    values = [coco.get(k) for k in ACCURACY_METRICS]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return round(float(np.mean(values)), 12)


def normal_scores(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Phi((x - mean) / population sd) over the defined values; 0.5 each when they do not vary.

    >>> {k: round(v, 4) for k, v in normal_scores({"a": 1.0, "b": 2.0, "c": 3.0}).items()}
    {'a': 0.1103, 'b': 0.5, 'c': 0.8897}
    """
    from scipy.stats import norm

    defined = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
    out: dict[str, float | None] = {k: None for k in values}
    if not defined:
        return out
    x = np.array(list(defined.values()))
    sd = float(x.std(ddof=0))
    z = np.zeros_like(x) if sd == 0 else (x - x.mean()) / sd
    out.update(zip(defined, (float(p) for p in norm.cdf(z))))
    return out


def load_usability(path: str | Path | None = None) -> tuple[dict[str, dict[str, float]], str]:
    """Usability scores ``{method: {criterion: score}}`` and the file's ``source`` text.

    The file holds ``methods: {name: {code_maintenance: 1-10, ease_of_use: 1-10,
    hardware_support: 1-10, note: ...}}`` and an optional ``source``; names
    are method names of the METHODS table or method labels of an experiment.
    """
    import yaml

    path = Path(path) if path is not None else DEFAULT_USABILITY
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read usability scores ({exc})", path=path) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("methods"), dict):
        raise DataError("usability file needs a `methods:` mapping of method name -> scores", path=path)
    scores = {}
    for name, entry in raw["methods"].items():
        if not isinstance(entry, dict):
            raise DataError(f"methods.{name}: expected a mapping of criterion -> score", path=path)
        row = {}
        for c in USABILITY_CRITERIA:
            v = entry.get(c)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 10:
                raise DataError(f"methods.{name}.{c}: needs a score from 1 to 10, got {v!r}", path=path)
            row[c] = float(v)
        scores[str(name)] = row
    return scores, str(raw.get("source", ""))


@dataclass(frozen=True)
class RankRow:
    """One model's components, overall score and rank."""

    model: str
    accuracy: dict  # task -> accuracy (None when not scored)
    mean_accuracy: float | None
    usability: float | None
    usability_normalised: dict  # criterion -> Phi(z)
    scalability: float | None
    ts_normalised: dict  # task -> Phi(z) of Ts
    overall: float | None
    rank: int | None
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Ranking:
    rows: tuple[RankRow, ...]  # best first
    tasks: tuple[str, ...]
    method: str

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "tasks": list(self.tasks), "method": self.method}


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def rank_models(
    accuracy: Mapping[str, Mapping[str, float | None]],
    *,
    usability: Mapping[str, Mapping[str, float] | None] | None = None,
    running_time: Mapping[str, Mapping[str, float | None]] | None = None,
) -> Ranking:
    """Rank models from their task accuracies, raw usability scores and standardised running times Ts.

    ``accuracy[model][task]`` (see :func:`task_accuracy`), ``usability[model]``
    (criterion -> 1-10 score, or None when unscored) and
    ``running_time[model][task]`` (Ts in seconds, None when not trained).

    >>> r = rank_models({"a": {"t": 0.8}, "b": {"t": 0.6}},
    ...                 usability={"a": {"code_maintenance": 5, "ease_of_use": 5, "hardware_support": 5},
    ...                            "b": {"code_maintenance": 5, "ease_of_use": 5, "hardware_support": 5}},
    ...                 running_time={"a": {"t": 10.0}, "b": {"t": 10.0}})
    >>> [(x.model, x.usability, x.scalability, round(x.overall, 4), x.rank) for x in r.rows]
    [('a', 0.5, 0.5, 0.6, 1), ('b', 0.5, 0.5, 0.5333, 2)]
    """
    models = list(accuracy)
    usability = usability or {}
    running_time = running_time or {}
    tasks = list(dict.fromkeys(t for m in models for t in accuracy[m]))
    rt_tasks = list(dict.fromkeys(t for m in models for t in (running_time.get(m) or {})))
    u_norm = {c: normal_scores({m: (usability.get(m) or {}).get(c) for m in models}) for c in USABILITY_CRITERIA}
    t_norm = {t: normal_scores({m: (running_time.get(m) or {}).get(t) for m in models}) for t in rt_tasks}
    rows = []
    for m in models:
        acc = {t: accuracy[m].get(t) for t in tasks}
        u_parts = {c: u_norm[c][m] for c in USABILITY_CRITERIA}
        usab = None if any(v is None for v in u_parts.values()) else float(np.mean(list(u_parts.values())))
        ts_parts = {t: t_norm[t][m] for t in rt_tasks if t_norm[t][m] is not None}
        scal = 1.0 - float(np.mean(list(ts_parts.values()))) if ts_parts else None
        missing = [f"accuracy {t}" for t, v in acc.items() if v is None]
        missing += [] if usab is not None else ["usability (no scores)"]
        missing += [] if scal is not None else ["scalability (no training time)"]
        overall = _mean([*acc.values(), usab, scal])
        rows.append(RankRow(m, acc, _mean(list(acc.values())), usab, u_parts, scal, ts_parts, overall, None,
                            tuple(missing)))
    ranked = sorted([r for r in rows if r.overall is not None], key=lambda r: -r.overall)
    final = []
    for r in ranked:
        rank = 1 + sum(1 for o in ranked if o.overall > r.overall)
        final.append(RankRow(**{**asdict(r), "rank": rank, "missing": r.missing}))
    final += [r for r in rows if r.overall is None]
    method = ("18-methods ranking scheme: accuracy of a task = mean(mAP, AP50, AP75, AR50, AR75); usability = mean "
              "over code maintenance, ease of use, hardware support of Phi(z) of the 1-10 score across the models; "
              "scalability = 1 - mean over tasks of Phi(z) of the standardised training time Ts; z with the "
              "population sd, Phi(0) = 0.5 when the values do not vary; overall = mean of every task's accuracy, "
              "usability and scalability (missing components left out)")
    return Ranking(tuple(final), tuple(tasks), method)


def ranking_rows(ranking: Ranking) -> list[dict]:
    """One tidy dict per model: rank, overall, components, each task's accuracy and normalised Ts."""
    out = []
    for r in ranking.rows:
        row = {"rank": r.rank, "model": r.model, "overall": r.overall, "mean_accuracy": r.mean_accuracy,
               "usability": r.usability, "scalability": r.scalability}
        row.update({f"accuracy {t}": r.accuracy.get(t) for t in ranking.tasks})
        row.update({f"usability {c}": r.usability_normalised.get(c) for c in USABILITY_CRITERIA})
        row.update({f"Ts normalised {t}": v for t, v in r.ts_normalised.items()})
        row["missing"] = "; ".join(r.missing)
        out.append(row)
    return out
