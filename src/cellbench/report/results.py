"""A run's results for tables and plots, read through the runner's store records.

The records are the runner's (:mod:`cellbench.runner.records`): the report
only pairs each stored evaluation with the grid entry it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cellbench.errors import DataError
from cellbench.metrics import threshold_key  # re-exported: tables and plots key thresholds as the metrics do
from cellbench.runner import RESULTS_DB, EntryRecord, EvaluationRecord, InvocationRecord, ResultStore

__all__ = ["EntryEvaluation", "RunResults", "load_results", "threshold_key"]

T = TypeVar("T")


@dataclass(frozen=True)
class EntryEvaluation:
    """One stored evaluation with the grid entry it scores."""

    entry: EntryRecord
    evaluation: EvaluationRecord

    @property
    def context(self) -> tuple:
        """Everything but the model: rows sharing it are comparable."""
        e, ev = self.entry, self.evaluation
        return (e.dataset, e.task, ev.split, ev.ground_truth, ev.flatten_policy, ev.boundary_px)

    def setting(self) -> str:
        """The setting in words, for captions."""
        return f"dataset {self.entry.dataset}, task {self.entry.task}, {self.evaluation.setting()}"


@dataclass(frozen=True)
class RunResults:
    """Everything a report needs from a run folder.

    ``memo`` keeps what the report's sections read back from the data and
    the cache (ground truth, predictions, shape measures, COCO summaries) for
    the life of this object, so that each is read or computed once
    (:meth:`memoised`).
    """

    run_dir: Path
    name: str
    experiment: dict
    entries: tuple[EntryRecord, ...]
    evaluations: tuple[EntryEvaluation, ...]
    invocations: tuple[InvocationRecord, ...]
    #: The experiment file the run was started from (as recorded; it may have moved since).
    experiment_path: str | None = None
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def memoised(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``, called once per ``key`` for the life of these results; later calls return its value.

        An exception is not kept: the next call tries again.
        """
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    @property
    def failed(self) -> tuple[EntryRecord, ...]:
        return tuple(e for e in self.entries if e.status == "failed")


def load_results(run_dir: str | Path) -> RunResults:
    """Read ``run_dir/results.sqlite`` (a run folder, or the database file itself), read-only."""
    path = Path(run_dir)
    db_path = path if path.is_file() else path / RESULTS_DB
    if not db_path.is_file():
        raise DataError(f"no {RESULTS_DB} here: not a cellbench run folder", path=path)
    with ResultStore.open_readonly(db_path) as store:
        runs = store.runs()
        if not runs:
            raise DataError("results database holds no run", path=db_path)
        run = runs[0]
        entries = store.entries(run.run_id)
        by_key = {e.key: e for e in entries}
        evaluations = tuple(
            EntryEvaluation(by_key[key], ev) for key, evs in store.evaluations(run.run_id).items() for ev in evs
        )
        invocations = tuple(store.invocations(run.run_id))
    return RunResults(run_dir=db_path.parent, name=run.name, experiment=run.experiment, entries=tuple(entries),
                      evaluations=evaluations, invocations=invocations, experiment_path=run.experiment_path)
