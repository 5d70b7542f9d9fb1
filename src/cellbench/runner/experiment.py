"""Experiment files: one YAML file describes a whole benchmark.

An experiment names datasets (layout, path, splits, tasks), methods (a method
name from :data:`cellbench.methods.METHODS` and its config), training regimes
(zero-shot, or fine-tuned on 1 / 5 / 10 / all training images) and the
evaluation settings. :func:`load_experiment` reads and checks the file; every
problem is a :class:`~cellbench.errors.DataError` naming the file and the key.

A file looks like this (``method`` is a name of the method table, or
``package.module:Class`` for a method that lives outside cellbench)::

    name: dsb-small
    seeds: [0]
    datasets:
      dsb:
        layout: dsb
        path: data/dsb2018          # relative to this file; $VAR and ${VAR:-default} expand
        train: train
        valid: null
        test: [test]                # or {split: gen, tasks: [cells]} entries
        tasks: [all]
    methods:
      watershed: {method: watershed, regimes: [zero-shot]}
      cellpose:
        method: cellpose
        preset: cpu                 # a named preset of the method (cellbench methods lists them)
        config: {n_epochs: 80}      # the method's Config fields, as in a `cellbench train --config` file
        # config_file: configs/cellpose.yaml   # such a file (relative to this one); `config` is merged over it
        # if_installed: true        # skip the method (with a note) when its extra is not installed here
        tiling: {tile: 512, overlap: 128}   # optional; default: the method's own
        per_dataset:                # settings for one dataset only, merged over config
          dsb: {diam_mean: 12.0, bsize: 64}
    regimes:
      zero-shot: {train_images: 0}
      one-image: {train_images: 1}
      fine-tuned: {train_images: all}
    evaluation:
      thresholds: [0.5, 0.7, 0.75, 0.9]
      boundary_px: 2                # the NeurIPS-2022 rule; 0 is off
      ground_truth: [overlap, flattened]
      flatten: priority-last
      coco: true
      per_class: false
      metrics: [matching, dice, aji, pq_canonical]   # optional; default matching, dice
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cellbench.errors import DataError
from cellbench.instances import FLATTEN_NAMES
from cellbench.methods import unmet_requirements
from cellbench.methods.base import merge_config
from cellbench.methods.config_file import read_config_file
from cellbench.metrics import REPORT_THRESHOLDS

__all__ = [
    "DatasetSpec",
    "EvaluationSpec",
    "Experiment",
    "MethodSpec",
    "Regime",
    "TestSpec",
    "experiment_from_dict",
    "load_experiment",
    "resolve_method",
    "stable_hash",
]

GroundTruth = Literal["overlap", "flattened"]
_GROUND_TRUTHS = ("overlap", "flattened")


@dataclass(frozen=True)
class TestSpec:
    """One split to test on, and the tasks it is used for (``None``: every task of the dataset)."""

    split: str | None
    tasks: tuple[str, ...] | None = None

    def applies_to(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lies and how it is used: train / valid splits, test splits, tasks."""

    name: str
    layout: str
    path: str
    train: str | None = None
    valid: str | None = None
    test: tuple[TestSpec, ...] = (TestSpec(None),)
    tasks: tuple[str, ...] = ("all",)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: The name of a dataset of :mod:`cellbench.data.registry` (then ``path`` is that name too).
    registered: str | None = None

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class MethodSpec:
    """A method under a label: ``method`` names the implementation, ``config`` its settings.

    ``config`` is what the method's ``Config`` is built from: the named ``preset``
    (if any) with the experiment's ``config`` merged over it. ``per_dataset``
    maps a dataset name to settings merged over ``config`` for that dataset
    only; :meth:`for_dataset` applies them (the grid does, so a grid entry's config
    is the one it ran with). ``tiling`` is ``{tile, overlap}`` or None for the
    method's default, as in a ``cellbench train --config`` file.
    """

    name: str
    method: str
    config: Mapping[str, Any] = field(default_factory=dict)
    regimes: tuple[str, ...] | None = None  # None: every regime of the experiment
    preset: str | None = None
    tiling: Mapping[str, int] | None = None
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_dataset(self, dataset: str) -> MethodSpec:
        """This method with the settings of ``dataset`` merged in (and no other dataset's)."""
        extra = dict(self.per_dataset.get(dataset, {}))
        tiling = extra.pop("tiling", self.tiling)
        return dataclasses.replace(self, config=merge_config(self.config, extra), tiling=tiling, per_dataset={})

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class Regime:
    """A training regime: ``train_images`` 0 is zero-shot, ``None`` is all training images."""

    name: str
    train_images: int | None = None

    @property
    def trains(self) -> bool:
        return self.train_images != 0

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class EvaluationSpec:
    """How predictions are scored; every stored score carries these settings.

    ``ground_truth`` lists the references: ``overlap`` (the annotations as they
    are, overlaps kept) and ``flattened`` (flattened with the ``flatten`` policy,
    as label-image methods are trained). ``boundary_px`` is the NeurIPS-2022
    rule (instances touching a frame of that width are dropped; 0 is off).
    ``metrics`` names the metric families to score (``cellbench evaluate
    --metrics``; :data:`cellbench.metrics.registry.METRICS`), empty for the
    default ``matching`` and ``dice``; ``coco: true`` adds COCO either way.
    """

    thresholds: tuple[float, ...] = REPORT_THRESHOLDS
    boundary_px: int = 0
    ground_truth: tuple[GroundTruth, ...] = ("overlap",)
    flatten: str = "priority-last"
    coco: bool = False
    per_class: bool = False
    # absent from to_dict when empty, so experiments written before it keep their fingerprint
    metrics: tuple[str, ...] = field(default=(), metadata={"omit_empty": True})

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class Experiment:
    """A whole benchmark: the grid is datasets x tasks x methods x regimes x seeds."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    methods: tuple[MethodSpec, ...]
    regimes: tuple[Regime, ...]
    evaluation: EvaluationSpec = EvaluationSpec()
    seeds: tuple[int, ...] = (0,)
    description: str = ""
    source: str | None = field(default=None, compare=False)
    #: ``if_installed`` methods left out because they cannot run here: label -> what they need.
    skipped: Mapping[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        """Everything that defines the results (the file it came from and what was skipped are left out)."""
        d = _plain(self)
        d.pop("source")
        d.pop("skipped")
        return d

    @property
    def fingerprint(self) -> str:
        return stable_hash(self.to_dict())


def resolve_method(name: str) -> type:
    """The method class for ``name``: a name of :data:`cellbench.methods.METHODS`, or
    ``package.module:Class`` for a method outside cellbench (passed in, never registered).
    """
    from cellbench.methods import Method, get_method

    if ":" not in name:
        return get_method(name)
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"method {name!r} cannot be imported ({exc})") from exc
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise DataError(f"{name!r} is not a cellbench Method subclass")
    return cls


def stable_hash(value: Any) -> str:
    """Short hash of a JSON value, independent of key order.

    >>> stable_hash({"a": 1, "b": [2]}) == stable_hash({"b": [2], "a": 1})
    True
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_empty") and not getattr(obj, f.name))}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def load_experiment(path: str | Path, *, data_paths: Mapping[str, str] | None = None) -> Experiment:
    """Read an experiment YAML file; relative dataset paths are relative to the file.

    That holds wherever the command runs from: a path is resolved against the
    file's folder and stored absolute.

    ``data_paths`` replaces the path of datasets by name (``--data NAME=PATH``).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read experiment file ({exc.strerror})", path=path) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"not valid YAML: {exc}", path=path) from exc
    return experiment_from_dict(raw, base_dir=path.parent, source=path, data_paths=data_paths)


def experiment_from_dict(
    raw: Any,
    *,
    base_dir: str | Path = ".",
    source: str | Path | None = None,
    data_paths: Mapping[str, str] | None = None,
) -> Experiment:
    """Build and check an :class:`Experiment` from the parsed YAML.

    Relative dataset paths are taken relative to ``base_dir`` (the experiment
    file's folder) and stored absolute, so the experiment means the same from
    any working directory.
    """
    r = _Reader(source)
    top = r.mapping(raw, "experiment")
    r.only(top, "experiment", {"name", "description", "seeds", "datasets", "methods", "regimes", "evaluation"})
    name = r.string(top.get("name"), "name")
    seeds = tuple(r.integer(s, f"seeds[{i}]") for i, s in enumerate(r.listing(top.get("seeds", [0]), "seeds")))
    if not seeds:
        r.fail("seeds", "needs at least one seed")
    overrides = dict(data_paths or {})
    datasets = tuple(
        _dataset(r, key, value, Path(base_dir), overrides.pop(key, None))
        for key, value in r.named(top.get("datasets"), "datasets").items()
    )
    if overrides:
        r.fail("--data", f"no dataset named {sorted(overrides)}; datasets: {[d.name for d in datasets]}")
    regimes = tuple(_regime(r, key, value) for key, value in r.named(top.get("regimes"), "regimes").items())
    methods, skipped = [], {}
    for key, value in r.named(top.get("methods"), "methods").items():
        spec = _method(r, key, value, {g.name for g in regimes}, [d.name for d in datasets], Path(base_dir))
        if isinstance(spec, str):
            skipped[key] = spec
        else:
            methods.append(spec)
    if not methods:
        r.fail("methods", f"none of the methods can run here: {skipped}")
    evaluation = _evaluation(r, top.get("evaluation", {}))
    return Experiment(
        name=name,
        datasets=datasets,
        methods=tuple(methods),
        regimes=regimes,
        evaluation=evaluation,
        seeds=seeds,
        description=str(top.get("description", "")),
        source=None if source is None else str(source),
        skipped=skipped,
    )


class _Reader:
    """Typed access to the parsed YAML, failing with the file and the key's path."""

    def __init__(self, source: str | Path | None) -> None:
        self.source = source

    def fail(self, where: str, problem: str):
        raise DataError(f"{where}: {problem}", path=self.source)

    def mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {_kind(value)}")
        return value

    def only(self, value: dict, where: str, known: set[str]) -> None:
        unknown = sorted(set(map(str, value)) - known)
        if unknown:
            self.fail(where, f"unknown key(s) {unknown}; known: {sorted(known)}")

    def named(self, value: Any, where: str) -> dict:
        """A non-empty mapping of name -> settings."""
        if value is None:
            self.fail(where, "is missing")
        value = self.mapping(value, where)
        if not value:
            self.fail(where, "is empty")
        return {str(k): v for k, v in value.items()}

    def listing(self, value: Any, where: str) -> list:
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(where, f"must be a non-empty string, got {_kind(value)}")
        return value

    def integer(self, value: Any, where: str, *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(where, f"must be an integer >= {minimum}, got {value!r}")
        return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def _expand(path: str) -> str:
    """``$VAR``, ``${VAR}`` and ``${VAR:-default}`` from the environment, then ``~``.

    >>> os.environ["CB_DOCTEST"] = "/data"
    >>> _expand("${CB_DOCTEST}/x"), _expand("${CB_UNSET_VAR:-/cache}/y")
    ('/data/x', '/cache/y')
    """

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        value = os.environ.get(name)
        if value:
            return value
        if m.group(2) is not None:
            return m.group(2)
        raise DataError(f"environment variable {name} in dataset path {path!r} is not set")

    return os.path.expanduser(_ENV.sub(sub, path))


def _dataset(r: _Reader, name: str, raw: Any, base_dir: Path, override: str | None) -> DatasetSpec:
    where = f"datasets.{name}"
    raw = r.mapping(raw, where)
    r.only(raw, where, {"layout", "path", "registered", "train", "valid", "test", "tasks", "options"})
    registered = raw.get("registered")
    if registered is not None:
        layout, path = _registered_dataset(r, raw, where)
    if registered is not None and override is not None:
        # --data NAME=PATH: the registered dataset's files, somewhere else, read with its layout
        registered = None
        path = Path(os.path.abspath(Path(_expand(override)).expanduser()))
    elif registered is None:
        layout = r.string(raw.get("layout"), f"{where}.layout")
        from cellbench.data import LAYOUTS

        if layout not in LAYOUTS:
            r.fail(f"{where}.layout", f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
        raw_path = override if override is not None else r.string(raw.get("path"), f"{where}.path")
        try:
            path = Path(_expand(raw_path))
        except DataError as exc:
            r.fail(f"{where}.path", exc.problem)
        path = Path(os.path.abspath(Path(base_dir).expanduser() / path))
    tests = []
    for i, t in enumerate(r.listing(raw.get("test", [None]), f"{where}.test")):
        if t is None or isinstance(t, str):
            tests.append(TestSpec(t))
            continue
        t = r.mapping(t, f"{where}.test[{i}]")
        r.only(t, f"{where}.test[{i}]", {"split", "tasks"})
        tasks = t.get("tasks")
        tests.append(TestSpec(t.get("split"), None if tasks is None else tuple(map(str, r.listing(tasks, "")))))
    tasks = tuple(str(t) for t in r.listing(raw.get("tasks", ["all"]), f"{where}.tasks"))
    for i, t in enumerate(tests):
        extra = sorted(set(t.tasks or ()) - set(tasks))
        if extra:
            r.fail(f"{where}.test[{i}].tasks", f"{extra} are not among the dataset's tasks {list(tasks)}")
    options = r.mapping(raw.get("options", {}), f"{where}.options")
    for key in ("train", "valid"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            r.fail(f"{where}.{key}", f"must be a split name, got {_kind(raw[key])}")
    return DatasetSpec(
        name=name,
        layout=layout,
        path=str(path),
        train=raw.get("train"),
        valid=raw.get("valid"),
        test=tuple(tests),
        tasks=tasks,
        options=dict(options),
        registered=registered,
    )


def _registered_dataset(r: _Reader, raw: Mapping, where: str) -> tuple[str, str]:
    """(layout, name) of ``registered: NAME``, a dataset downloaded by name; it takes no path or layout."""
    from cellbench.data.registry import DATASETS

    name = r.string(raw["registered"], f"{where}.registered")
    if name not in DATASETS:
        r.fail(f"{where}.registered", f"unknown dataset {name!r}; registered: {', '.join(DATASETS)}")
    given = sorted({"path", "layout"} & set(raw))
    if given:
        r.fail(f"{where}.{given[0]}", "a registered dataset brings its own path and layout: give neither")
    layouts = {s.layout for s in DATASETS[name].splits.values()}
    return (layouts.pop() if len(layouts) == 1 else "mixed"), name


def _regime(r: _Reader, name: str, raw: Any) -> Regime:
    where = f"regimes.{name}"
    raw = r.mapping(raw if raw is not None else {}, where)
    r.only(raw, where, {"train_images"})
    n = raw.get("train_images", "all")
    if n == "all":
        return Regime(name, None)
    return Regime(name, r.integer(n, f"{where}.train_images"))


def _method(r: _Reader, name: str, raw: Any, regimes: set[str], datasets: list[str],
            base_dir: Path) -> MethodSpec | str:
    """The method entry ``name``; or, for an ``if_installed`` method that cannot run here, why not."""
    where = f"methods.{name}"
    raw = r.mapping(raw, where)
    r.only(raw, where, {"method", "config", "config_file", "regimes", "preset", "tiling", "per_dataset",
                        "if_installed"})
    method = r.string(raw.get("method", name), f"{where}.method")
    try:
        cls = resolve_method(method)
    except DataError as exc:
        r.fail(f"{where}.method", exc.problem)
    unmet = unmet_requirements(cls)
    if unmet:
        if raw.get("if_installed") is True:
            return unmet
        r.fail(where, f"{method} {unmet}; install it, or mark the method `if_installed: true` to skip it")
    config = _moved(r, cls, r.mapping(raw.get("config", {}) or {}, f"{where}.config"), f"{where}.config")
    if raw.get("config_file") is not None:  # the file's settings, the experiment's config over them
        config_file = base_dir / Path(os.path.expandvars(r.string(raw["config_file"], f"{where}.config_file")))
        config = merge_config(_moved(r, cls, read_config_file(config_file), f"{where}.config_file"), config)
    tiling_values = config.pop("tiling", raw.get("tiling"))
    preset = raw.get("preset")
    if preset is not None:
        presets = getattr(cls, "presets", {}) or {}
        if preset not in presets:
            r.fail(f"{where}.preset", f"{method} has no preset {preset!r}; presets: {sorted(presets) or 'none'}")
        config = merge_config(presets[preset], config)
        if "tiling" in config:  # the preset's tiling, the experiment's over it
            tiling_values = merge_config(config.pop("tiling"), r.mapping(tiling_values or {}, f"{where}.tiling"))
    per_dataset = {}
    for ds, extra in r.mapping(raw.get("per_dataset", {}) or {}, f"{where}.per_dataset").items():
        if ds not in datasets:
            r.fail(f"{where}.per_dataset", f"no dataset named {ds!r}; datasets: {datasets}")
        per_dataset[str(ds)] = _moved(r, cls, r.mapping(extra or {}, f"{where}.per_dataset.{ds}"),
                                      f"{where}.per_dataset.{ds}")
    from cellbench.methods import config_from_dict

    tiling = None
    for ds in [None, *per_dataset]:  # unknown fields fail now, not hours into a run
        values = merge_config(config, {k: v for k, v in per_dataset.get(ds, {}).items() if k != "tiling"})
        try:
            resolved = config_from_dict(cls.Config, values)
        except (DataError, TypeError, ValueError) as exc:
            r.fail(f"{where}.config" if ds is None else f"{where}.per_dataset.{ds}", getattr(exc, "problem", str(exc)))
        if ds is None:
            tiling = _tiling(r, cls, tiling_values, f"{where}.tiling", resolved)
        elif "tiling" in per_dataset[ds]:  # a tile given alone takes the dataset's config's defaults
            per_dataset[ds]["tiling"] = _tiling(r, cls, per_dataset[ds]["tiling"],
                                                f"{where}.per_dataset.{ds}.tiling", resolved)
    only = raw.get("regimes")
    if only is not None:
        only = tuple(map(str, r.listing(only, f"{where}.regimes")))
        unknown = sorted(set(only) - regimes)
        if unknown:
            r.fail(f"{where}.regimes", f"unknown regime(s) {unknown}; regimes: {sorted(regimes)}")
    return MethodSpec(name=name, method=method, config=config, regimes=only, preset=preset, tiling=tiling,
                      per_dataset=per_dataset)


def _tiling(r: _Reader, cls: type, raw: Any, where: str, config: Any) -> dict | None:
    """``{tile, overlap}`` over the method's default tiling for ``config``, checked; None when not given."""
    if raw is None:
        return None
    from cellbench.methods.tiling import method_tiling

    r.only(r.mapping(raw, where), where, {"tile", "overlap"})
    try:
        return method_tiling(cls, raw, config=config).to_dict()
    except DataError as exc:
        r.fail(where, exc.problem)


def _moved(r: _Reader, cls: type, values: Mapping, where: str) -> dict:
    """Method settings with the old ``tile`` / ``tile_overlap`` of SAM and CellSeg1 read as ``tiling``."""
    from cellbench.methods.tiling import move_old_tiling_keys

    try:
        return move_old_tiling_keys(cls, values, source=f"{r.source}: {where}" if r.source else where)
    except DataError as exc:
        r.fail(where, exc.problem)


def _evaluation(r: _Reader, raw: Any) -> EvaluationSpec:
    where = "evaluation"
    raw = r.mapping(raw if raw is not None else {}, where)
    r.only(raw, where, {f.name for f in dataclasses.fields(EvaluationSpec)})
    default = EvaluationSpec()
    thresholds = tuple(raw.get("thresholds", default.thresholds))
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            r.fail(f"{where}.thresholds", f"IoU thresholds lie in (0, 1], got {t!r}")
    gts = tuple(r.listing(raw.get("ground_truth", list(default.ground_truth)), f"{where}.ground_truth"))
    for g in gts:
        if g not in _GROUND_TRUTHS:
            r.fail(f"{where}.ground_truth", f"{g!r} is not one of {list(_GROUND_TRUTHS)}")
    flatten = raw.get("flatten", default.flatten)
    if flatten not in FLATTEN_NAMES:
        r.fail(f"{where}.flatten", f"{flatten!r} is not one of {list(FLATTEN_NAMES)}")
    for key in ("coco", "per_class"):
        if not isinstance(raw.get(key, False), bool):
            r.fail(f"{where}.{key}", f"must be true or false, got {_kind(raw[key])}")
    metrics = tuple(r.listing(raw.get("metrics", []), f"{where}.metrics"))
    if metrics:
        from cellbench.metrics.registry import METRICS

        known = [m.name for m in METRICS]
        for name in metrics:
            if not isinstance(name, str) or name not in known:
                r.fail(f"{where}.metrics", f"{name!r} is not a metric; metrics: {', '.join(known)}")
        if len(set(metrics)) != len(metrics):
            r.fail(f"{where}.metrics", f"a metric is named twice: {list(metrics)}")
    return EvaluationSpec(
        thresholds=tuple(float(t) for t in sorted(set(thresholds))),
        boundary_px=r.integer(raw.get("boundary_px", default.boundary_px), f"{where}.boundary_px"),
        ground_truth=gts,
        flatten=flatten,
        coco=raw.get("coco", False),
        per_class=raw.get("per_class", False),
        metrics=metrics,
    )
