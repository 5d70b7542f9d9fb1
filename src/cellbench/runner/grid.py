"""The grid of an experiment: one entry per dataset x task x method x regime x seed.

A grid entry trains (or not, zero-shot) once and is tested on every test split of its
dataset that applies to its task. Its key is a hash of everything that defines
its results, so a resumed run recognises the entries it has done. ("Cell" in
cellbench always means a biological cell.)
"""

from __future__ import annotations

from dataclasses import dataclass

from cellbench.runner.experiment import (
    DatasetSpec,
    EvaluationSpec,
    Experiment,
    MethodSpec,
    Regime,
    TestSpec,
    resolve_method,
    stable_hash,
)
from cellbench.errors import DataError

__all__ = ["GridEntry", "expand_grid", "seed_matters"]


@dataclass(frozen=True)
class GridEntry:
    """One unit of work of a run, with the full configuration that produces its scores."""

    dataset: DatasetSpec
    task: str
    method: MethodSpec
    regime: Regime
    seed: int
    tests: tuple[TestSpec, ...]
    evaluation: EvaluationSpec

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset.to_dict(),
            "task": self.task,
            "method": self.method.to_dict(),
            "regime": self.regime.to_dict(),
            "seed": self.seed,
            "tests": [{"split": t.split} for t in self.tests],
            "evaluation": self.evaluation.to_dict(),
        }

    @property
    def key(self) -> str:
        return stable_hash(self.to_dict())

    @property
    def label(self) -> str:
        return f"{self.dataset.name}/{self.task}/{self.method.name}/{self.regime.name}/seed{self.seed}"


def seed_matters(method: MethodSpec, regime: Regime) -> bool:
    """Whether the seed can change a grid entry's model.

    It cannot when nothing is trained (zero-shot), nor when a method whose
    training draws no random numbers (``Method.seeded`` False: watershed's grid
    search, SAM's calibration) trains on all images. It can when the regime
    draws a subset of the training images: the seed picks them. A method that
    cannot be imported here counts as seeded.

    >>> ws = MethodSpec("ws", "watershed")
    >>> seed_matters(ws, Regime("all")), seed_matters(ws, Regime("five", 5)), seed_matters(ws, Regime("zs", 0))
    (False, True, False)
    """
    if not regime.trains:
        return False
    if regime.train_images is not None:
        return True
    try:
        return bool(resolve_method(method.method).seeded)
    except DataError:
        return True


def expand_grid(experiment: Experiment) -> list[GridEntry]:
    """Every grid entry of ``experiment`` in a fixed order (datasets, tasks, methods, regimes, seeds).

    A method limited to some regimes gets entries only for those; a task with no
    test split that applies to it gets no entry. Each entry's method carries the
    settings of its dataset (``per_dataset`` merged in). Where the seed cannot
    change the model (:func:`seed_matters`), the entry runs at the first seed only.
    """
    entries = []
    for dataset in experiment.datasets:
        for task in dataset.tasks:
            tests = tuple(t for t in dataset.test if t.applies_to(task))
            if not tests:
                continue
            for method in (m.for_dataset(dataset.name) for m in experiment.methods):
                for regime in experiment.regimes:
                    if method.regimes is not None and regime.name not in method.regimes:
                        continue
                    seeds = experiment.seeds if seed_matters(method, regime) else experiment.seeds[:1]
                    for seed in seeds:
                        entries.append(GridEntry(dataset, task, method, regime, seed, tests, experiment.evaluation))
    return entries
