"""The numbers a paper published, as records tied to the protocol entries that reproduce them.

Each protocol ``examples/protocols/NAME.yaml`` has a sibling
``NAME.published.yaml`` transcribing the paper's tables. :func:`load_published`
reads it into :class:`PublishedValue` records, one per number, each with its
source (table or figure, and the row), the cellbench metric it is
(:func:`cellbench.analysis.parse_metric`), its unit, the protocol entry it
belongs to (:class:`PublishedEntry`), whether it could be read with certainty,
and notes. :func:`check_published` ties every value to exactly one entry of
the protocol (dataset, task, test split, method label, regime, ground truth)
and to a metric the protocol's evaluation computes. Every mistake is a
:class:`~cellbench.errors.DataError` naming the file and the row.

The file (see ``examples/protocols/glioma_c6.published.yaml`` for a full one)::

    paper: glioma_c6_dataset_paper
    protocol: glioma_c6
    tables:
      - source: Table 2
        unit: percent                       # or fraction
        entry: {dataset: glioma-c6, ground_truth: overlap}     # shared by the rows
        columns: [precision@0.5, recall@0.5, f1@0.5]           # or {metric: M, entry: {...}} per column
        measured: true                      # false (with `why`): no run can measure these
        statistic: mean                     # how the run's seeds are summarised: mean, median, max
        relation: "="                       # ">": the number is a lower bound
        rows:
          - row: "Cells, spec: CellPose, fine-tuned"
            entry: {task: cells, split: test, method: cellpose, regime: fine-tuned}
            values: [88.87, 78.87, 83.57]   # null: not printed
            notes: {f1@0.5: how a damaged reading was restored}
            uncertain: {recall@0.5: why the value is doubtful}
    figures: [{source: Figure 2, what: ...}]                   # results given only as plots
    omitted: [{source: ..., what: ..., why: ...}]              # numbers left out, and why
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cellbench.analysis.published import SEED_STATISTICS, parse_metric
from cellbench.errors import DataError

__all__ = [
    "GROUND_TRUTHS",
    "PublishedEntry",
    "PublishedSet",
    "PublishedValue",
    "check_published",
    "load_published",
    "published_from_dict",
]

#: What a published value may be scored against: the run's two kinds, or references no run has.
GROUND_TRUTHS = ("overlap", "flattened", "expert-consensus")
_UNITS = {"fraction": 1.0, "percent": 100.0}


@dataclass(frozen=True)
class PublishedEntry:
    """The protocol entry a published value belongs to: everything but the seed.

    ``method`` is the protocol's method label (None for a row that is no method,
    as the Glioma paper's "Dataset annotation"); ``image`` names one test image
    where the paper scores a single one.
    """

    dataset: str | None = None
    task: str | None = None
    split: str | None = None
    method: str | None = None
    regime: str | None = None
    ground_truth: str = "overlap"
    image: str | None = None

    def label(self) -> str:
        """The entry in words: ``dataset/task/method/regime, split S, ground truth G``."""
        parts = "/".join(str(p) for p in (self.dataset, self.task, self.method or "annotation", self.regime) if p)
        image = f", {self.image}" if self.image else ""
        return f"{parts}, split {self.split or 'all'}{image}, ground truth {self.ground_truth}"

    def key(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class PublishedValue:
    """One published number: where it is printed, what it is, and the entry and metric it maps to.

    ``value`` is in ``unit`` as printed (None: the paper gives no number);
    :attr:`fraction` is it as a fraction, as cellbench's scores are.
    ``certain`` is False where the reading is doubtful (``note`` says why).
    ``measured`` is False for values no run can measure (``why`` says why).
    """

    paper: str
    source: str
    row: str
    metric: str
    value: float | None
    unit: str
    entry: PublishedEntry
    statistic: str = "mean"
    relation: str = "="
    certain: bool = True
    note: str = ""
    measured: bool = True
    why: str = ""

    @property
    def fraction(self) -> float | None:
        return None if self.value is None else self.value / _UNITS[self.unit]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> PublishedValue:
        """The record :meth:`to_dict` wrote (a run folder's ``protocol.json`` keeps them)."""
        d = dict(d)
        return cls(**{**d, "entry": PublishedEntry(**d["entry"])})


@dataclass(frozen=True)
class PublishedSet:
    """A protocol's published values, and the results its paper gives only as figures or that were left out."""

    paper: str
    protocol: str
    values: tuple[PublishedValue, ...]
    figures: tuple[Mapping[str, str], ...] = ()
    omitted: tuple[Mapping[str, str], ...] = ()
    path: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        return {"paper": self.paper, "protocol": self.protocol, "path": self.path,
                "values": [v.to_dict() for v in self.values], "figures": [dict(f) for f in self.figures],
                "omitted": [dict(o) for o in self.omitted]}

    @classmethod
    def from_dict(cls, d: Mapping) -> PublishedSet:
        return cls(paper=d["paper"], protocol=d["protocol"], path=d.get("path"),
                   values=tuple(PublishedValue.from_dict(v) for v in d["values"]),
                   figures=tuple(d.get("figures", ())), omitted=tuple(d.get("omitted", ())))


class _Where:
    """Fails with the file and the place in it."""

    def __init__(self, source: str | Path | None) -> None:
        self.source = source

    def fail(self, where: str, problem: str):
        raise DataError(f"{where}: {problem}", path=self.source)

    def mapping(self, value: Any, where: str, known: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__} {value!r}")
        unknown = sorted(set(map(str, value)) - known)
        if unknown:
            self.fail(where, f"unknown key(s) {unknown}; known: {sorted(known)}")
        missing = sorted(required - set(value))
        if missing:
            self.fail(where, f"missing key(s) {missing}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"must be a non-empty string, got {value!r}")
        return value


_ENTRY_KEYS = {f.name for f in fields(PublishedEntry)}


def _entry(w: _Where, raw: Any, where: str) -> dict:
    raw = w.mapping(raw if raw is not None else {}, where, _ENTRY_KEYS)
    for k, v in raw.items():
        if v is not None and not isinstance(v, str):
            w.fail(f"{where}.{k}", f"must be a string or null, got {v!r}")
    return dict(raw)


def _columns(w: _Where, raw: Any, where: str) -> list[tuple[str, dict]]:
    if not isinstance(raw, list) or not raw:
        w.fail(where, "must be a non-empty list of metric names")
    out = []
    for k, col in enumerate(raw):
        at = f"{where}[{k}]"
        if isinstance(col, str):
            col = {"metric": col}
        col = w.mapping(col, at, {"metric", "entry"}, {"metric"})
        try:
            metric = parse_metric(col["metric"]).name
        except DataError as exc:
            w.fail(at, exc.problem)
        out.append((metric, _entry(w, col.get("entry"), f"{at}.entry")))
    return out


def _value(w: _Where, v: Any, unit: str, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        w.fail(where, f"must be a number or null, got {v!r}")
    if not 0 <= v <= _UNITS[unit]:
        w.fail(where, f"{v} is outside 0 .. {_UNITS[unit]:g} ({unit})")
    return float(v)


def published_from_dict(raw: Any, *, source: str | Path | None = None) -> PublishedSet:
    """Check and expand the parsed YAML of a published-values file into a :class:`PublishedSet`."""
    w = _Where(source)
    top = w.mapping(raw, "published values", {"paper", "protocol", "tables", "figures", "omitted"},
                    {"paper", "protocol", "tables"})
    paper, protocol = w.text(top["paper"], "paper"), w.text(top["protocol"], "protocol")
    if not isinstance(top["tables"], list) or not top["tables"]:
        w.fail("tables", "must be a non-empty list")
    values: list[PublishedValue] = []
    seen: dict[tuple, str] = {}
    for i, table in enumerate(top["tables"]):
        where = f"tables[{i}]"
        table = w.mapping(table, where, {"source", "caption", "unit", "entry", "columns", "note", "rows", "measured",
                                         "why", "statistic", "relation"}, {"source", "unit", "columns", "rows"})
        src = w.text(table["source"], f"{where}.source")
        where = f"tables[{i}] ({src})"
        unit = table["unit"]
        if unit not in _UNITS:
            w.fail(f"{where}.unit", f"must be one of {list(_UNITS)}, got {unit!r}")
        measured = table.get("measured", True)
        if not isinstance(measured, bool):
            w.fail(f"{where}.measured", f"must be true or false, got {measured!r}")
        why = table.get("why", "")
        if not measured:
            why = w.text(why, f"{where}.why")
        shared = _entry(w, table.get("entry"), f"{where}.entry")
        columns = _columns(w, table["columns"], f"{where}.columns")
        metrics = [m for m, _ in columns]
        note = str(table.get("note", "") or "").strip()
        if not isinstance(table["rows"], list) or not table["rows"]:
            w.fail(f"{where}.rows", "must be a non-empty list")
        for j, row in enumerate(table["rows"]):
            at = f"{where}.rows[{j}]"
            row = w.mapping(row, at, {"row", "entry", "values", "notes", "uncertain", "statistic", "relation"},
                            {"row", "values"})
            label = w.text(row["row"], f"{at}.row")
            at = f"{where}.rows[{j}] ({label})"
            vals = row["values"]
            if not isinstance(vals, list) or len(vals) != len(columns):
                w.fail(f"{at}.values", f"needs {len(columns)} values (one per column {metrics}), got {vals!r}")
            statistic = row.get("statistic", table.get("statistic", "mean"))
            if statistic not in SEED_STATISTICS:
                w.fail(f"{at}.statistic", f"must be one of {list(SEED_STATISTICS)}, got {statistic!r}")
            relation = str(row.get("relation", table.get("relation", "=")))
            if relation not in ("=", ">"):
                w.fail(f"{at}.relation", f"must be '=' or '>', got {relation!r}")
            notes, uncertain = ({str(k): v for k, v in
                                 w.mapping(row.get(key) or {}, f"{at}.{key}", set(metrics)).items()}
                                for key in ("notes", "uncertain"))
            base = {**shared, **_entry(w, row.get("entry"), f"{at}.entry")}
            for (metric, col_entry), v in zip(columns, vals):
                entry = PublishedEntry(**{**base, **col_entry})
                _check_entry(w, entry, measured, at)
                key = (entry.key(), metric)
                if key in seen:
                    w.fail(at, f"{metric} of {entry.label()} is published twice (also in {seen[key]})")
                seen[key] = at
                words = [note] if note else []
                words += [f"{x}" for x in (notes.get(metric), uncertain.get(metric)) if x]
                values.append(PublishedValue(
                    paper=paper, source=src, row=label, metric=metric, value=_value(w, v, unit, f"{at}.values"),
                    unit=unit, entry=entry, statistic=statistic, relation=relation,
                    certain=metric not in uncertain, note=" ".join(words), measured=measured, why=why,
                ))
    figures = tuple(w.mapping(f, f"figures[{k}]", {"source", "what"}, {"source", "what"})
                    for k, f in enumerate(top.get("figures") or ()))
    omitted = tuple(w.mapping(o, f"omitted[{k}]", {"source", "what", "why"}, {"source", "what", "why"})
                    for k, o in enumerate(top.get("omitted") or ()))
    return PublishedSet(paper=paper, protocol=protocol, values=tuple(values), figures=figures, omitted=omitted,
                        path=None if source is None else str(source))


def _check_entry(w: _Where, entry: PublishedEntry, measured: bool, at: str) -> None:
    if entry.ground_truth not in GROUND_TRUTHS:
        w.fail(f"{at}.entry.ground_truth", f"must be one of {list(GROUND_TRUTHS)}, got {entry.ground_truth!r}")
    if not measured:
        return
    missing = [k for k in ("dataset", "task", "split", "method", "regime") if getattr(entry, k) is None]
    if missing:
        w.fail(f"{at}.entry", f"a measured value needs {missing} (from the table's or the row's entry)")
    if entry.ground_truth not in ("overlap", "flattened"):
        w.fail(f"{at}.entry.ground_truth", f"a run scores against overlap or flattened ground truth, not "
                                           f"{entry.ground_truth!r}; mark the table `measured: false` with `why`")


def load_published(path: str | Path) -> PublishedSet:
    """Read and check a published-values file (``NAME.published.yaml``)."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DataError(f"cannot read published values ({exc.strerror})", path=path) from exc
    except yaml.YAMLError as exc:
        raise DataError(f"not valid YAML: {exc}", path=path) from exc
    return published_from_dict(raw, source=path)


def check_published(published: PublishedSet, experiment: Any, *,
                    method_regimes: Mapping[str, Sequence[str] | None] | None = None) -> None:
    """Every value of ``published`` maps to one entry of ``experiment`` (a :class:`cellbench.runner.Experiment`)
    and to a metric its evaluation computes; a :class:`DataError` naming the file, row and mismatch otherwise.

    ``method_regimes``: label -> the regimes the protocol gives the method (None: all), for methods the experiment
    left out because their extra is not installed (``Experiment.skipped``); their other fields are not checked.
    """
    w = _Where(published.path)
    datasets = {d.name: d for d in experiment.datasets}
    methods = {m.name: m.regimes for m in experiment.methods}
    methods |= {label: (method_regimes or {}).get(label) for label in experiment.skipped}
    regimes = {r.name for r in experiment.regimes}
    ev = experiment.evaluation
    for v in published.values:
        e = v.entry
        at = f"{v.source}, row {v.row!r}, {v.metric}"
        d = datasets.get(e.dataset) if e.dataset is not None else None
        if e.dataset is not None and d is None:
            w.fail(at, f"protocol {published.protocol} has no dataset {e.dataset!r}; datasets: {sorted(datasets)}")
        if d is not None and e.task is not None and e.task not in d.tasks:
            w.fail(at, f"dataset {e.dataset} has no task {e.task!r}; tasks: {list(d.tasks)}")
        if d is not None and e.split is not None:
            splits = [t.split for t in d.test if e.task is None or t.applies_to(e.task)]
            if e.split not in splits:
                w.fail(at, f"dataset {e.dataset} tests task {e.task} on splits {splits}, not {e.split!r}")
        if e.method is not None:
            if e.method not in methods:
                w.fail(at, f"protocol {published.protocol} has no method {e.method!r}; methods: {sorted(methods)}")
            if e.regime is not None:
                allowed = methods[e.method]
                if e.regime not in regimes or (allowed is not None and e.regime not in allowed):
                    w.fail(at, f"method {e.method} runs regimes {list(allowed or sorted(regimes))}, not {e.regime!r}")
        if not v.measured:
            continue
        if e.ground_truth not in ev.ground_truth:
            w.fail(at, f"the protocol scores against {list(ev.ground_truth)}, not {e.ground_truth!r}")
        spec = parse_metric(v.metric)
        if spec.threshold is not None and not any(math.isclose(spec.threshold, t) for t in ev.thresholds):
            w.fail(at, f"IoU {spec.threshold:g} is not among the protocol's thresholds {list(ev.thresholds)}")
        if spec.kind == "coco" and not ev.coco:
            w.fail(at, "a COCO metric needs `coco: true` in the protocol's evaluation")
