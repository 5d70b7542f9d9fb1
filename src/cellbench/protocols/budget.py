"""Compute budgets for a protocol: ``paper`` runs it as written, ``cpu`` shrinks schedules and subsets.

A protocol is written for the paper's hardware (hundreds of epochs, every
image, several seeds). :func:`apply_budget` with ``cpu`` returns the same
experiment made to finish on a CPU, and every change it made, so that a run
says exactly how it differs from the paper's:

* **seeds**: the first seed only;
* **schedules**: each method's ``cpu`` preset (``cellbench methods`` lists
  them: what ``cellbench train --preset cpu`` uses) over the protocol's config,
  for methods that train in some regime. The preset is the method's CPU
  setting, so a schedule may also grow where it is short on a GPU (more epochs
  of fewer steps): every change is listed. Where the protocol starts from
  pretrained weights (``pretrained``, ``pretrained_model``, ``checkpoint``),
  only the preset's schedule settings (keys naming epochs, iterations, steps,
  images per epoch or the schedule's length) are taken, since its other
  settings may change the network those weights fit. A backbone or encoder
  the protocol names (:data:`ARCHITECTURE_KEYS`) is kept too: it is what the
  row measures (the 18-methods paper's Swin-S, ResNeSt, ... rows are Mask
  R-CNN with that backbone). A method without a ``cpu`` preset keeps its schedule;
* **subsets**: every split of every dataset cut to its first ``N`` images in
  name order (the data option ``first_images``, :func:`cellbench.data.layouts.first_images`),
  ``N`` = :data:`CPU_IMAGES` or the largest regime's number of training images
  if that is more; a regime of "all" training images then trains on those ``N``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from cellbench.errors import DataError

__all__ = ["ARCHITECTURE_KEYS", "BUDGETS", "CPU_IMAGES", "SCHEDULE_WORDS", "WEIGHT_KEYS", "BudgetChange",
           "apply_budget"]

Budget = Literal["paper", "cpu"]
#: The budgets ``cellbench reproduce --budget`` offers.
BUDGETS: tuple[str, ...] = ("paper", "cpu")
#: Images kept of every split under the cpu budget (more when a regime trains on more).
CPU_IMAGES = 4
#: Config keys holding one of these set how long training runs (the part of a cpu preset taken over weights).
SCHEDULE_WORDS: tuple[str, ...] = ("epoch", "iteration", "steps", "t_max", "nimg")
#: Config keys naming pretrained weights: their network must stay as the protocol sets it.
WEIGHT_KEYS: tuple[str, ...] = ("pretrained", "pretrained_model", "checkpoint")
#: Config keys that say which network a protocol row is: a cpu preset never replaces one the protocol names.
ARCHITECTURE_KEYS: tuple[str, ...] = ("backbone", "encoder")


@dataclass(frozen=True)
class BudgetChange:
    """One change a budget made: to the seeds, a method's config, a dataset's images or a regime."""

    scope: Literal["seeds", "method", "dataset", "regime"]
    target: str
    setting: str
    before: Any
    after: Any
    why: str

    def text(self) -> str:
        """The change in one line, as ``cellbench reproduce`` prints it."""
        name = self.scope if self.scope == "seeds" else f"{self.scope} {self.target}"
        return f"{name}: {self.setting} {_show(self.before)} -> {_show(self.after)} ({self.why})"

    def to_dict(self) -> dict:
        return asdict(self)


def _show(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(str, v)) + "]"
    return "unset" if v is None else str(v)


def _leaves(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out |= _leaves(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def _schedule_only(preset: Mapping) -> dict:
    out: dict = {}
    for k, v in preset.items():
        if isinstance(v, Mapping):
            inner = _schedule_only(v)
            if inner:
                out[k] = inner
        elif any(word in k for word in SCHEDULE_WORDS):
            out[k] = v
    return out


def _method_changes(spec, trains: bool, changes: list[BudgetChange]):
    from cellbench.methods.base import config_from_dict, config_to_dict, merge_config
    from cellbench.runner.experiment import resolve_method

    if not trains:  # zero-shot only: no schedule to shrink
        return spec
    cls = resolve_method(spec.method)
    preset = (getattr(cls, "presets", {}) or {}).get("cpu")
    if not preset:
        return spec
    weights = next((k for k in WEIGHT_KEYS if spec.config.get(k)), None)
    overlay = _schedule_only(preset) if weights else dict(preset)
    overlay = {k: v for k, v in overlay.items() if not (k in ARCHITECTURE_KEYS and k in spec.config)}
    tiling = overlay.pop("tiling", None)  # a preset's tiling is the model's (the spec's tiling), not a config field
    if not overlay and tiling is None:
        return spec
    config = merge_config(spec.config, overlay)
    resolved = config_from_dict(cls.Config, config)
    before = _leaves(config_to_dict(config_from_dict(cls.Config, spec.config)))
    after = _leaves(config_to_dict(resolved))
    why = (f"{spec.method}'s cpu preset, schedule settings only: the protocol starts from {weights} "
           f"{spec.config[weights]}" if weights else f"{spec.method}'s cpu preset")
    for key in sorted(after):
        if before.get(key) != after[key]:
            changes.append(BudgetChange("method", spec.name, f"config.{key}", before.get(key), after[key], why))
    if tiling is not None and spec.tiling is None:  # a tiling the protocol names stays, as over a preset's
        from cellbench.methods.tiling import method_tiling

        tiled = method_tiling(cls, tiling, config=resolved).to_dict()
        changes.append(BudgetChange("method", spec.name, "tiling", None, tiled, why))
        spec = dataclasses.replace(spec, tiling=tiled)
    return dataclasses.replace(spec, config=config)


def apply_budget(experiment: Any, budget: Budget, *, images: int = CPU_IMAGES) -> tuple[Any, tuple[BudgetChange, ...]]:
    """``experiment`` (a :class:`cellbench.runner.Experiment`) under ``budget``, and the changes made.

    ``paper`` changes nothing. ``cpu``: see the module docstring. ``images`` is the images kept per split.
    """
    if budget not in BUDGETS:
        raise DataError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if budget == "paper":
        return experiment, ()
    if images < 1:
        raise DataError(f"the cpu budget keeps at least one image per split, got {images}")
    changes: list[BudgetChange] = []
    seeds = experiment.seeds
    if len(seeds) > 1:
        changes.append(BudgetChange("seeds", "", "seeds", list(seeds), [seeds[0]], "the first seed only"))
        seeds = seeds[:1]
    training = {r.name for r in experiment.regimes if r.trains}
    methods = tuple(_method_changes(m, bool(training & set(m.regimes or training)), changes)
                    for m in experiment.methods)
    n = max([images, *(r.train_images for r in experiment.regimes if r.train_images)])
    datasets = []
    for d in experiment.datasets:
        current = d.options.get("first_images")
        if current is not None and current <= n:
            datasets.append(d)
            continue
        changes.append(BudgetChange("dataset", d.name, "options.first_images", current, n,
                                    f"every split cut to its first {n} images in name order"))
        datasets.append(dataclasses.replace(d, options={**d.options, "first_images": n}))
    for r in experiment.regimes:
        if r.train_images is None:
            changes.append(BudgetChange("regime", r.name, "train_images", "all", f"all of the first {n}",
                                        "the training split is cut"))
    return dataclasses.replace(experiment, seeds=seeds, methods=methods, datasets=tuple(datasets)), tuple(changes)
