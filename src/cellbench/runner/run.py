"""Running an experiment into a run folder, resumably.

A run folder holds ``results.sqlite`` (the scores, see :mod:`cellbench.runner.store`),
``experiment.json`` (the experiment as run) and ``cache/`` (trained models and
predictions). Why a resumed run loses nothing and counts nothing twice:

* a cell's results are committed in one transaction when the cell finishes,
  and a committed cell is skipped on resume (its key is in ``cells``);
* a cell interrupted half-way left only whole files in the cache (atomic
  renames), and the rerun uses them: the trained model is loaded, not retrained,
  and predicted images are not predicted again;
* the same experiment must be given on resume (its fingerprint is checked).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.runner.cell import run_cell
from cellbench.runner.executors import Executor, LocalExecutor
from cellbench.runner.experiment import Experiment
from cellbench.runner.grid import expand_grid
from cellbench.runner.store import ResultStore

__all__ = ["RESULTS_DB", "RunSummary", "run_experiment"]

log = logging.getLogger(__name__)

RESULTS_DB = "results.sqlite"


@dataclass(frozen=True)
class RunSummary:
    """What one call of :func:`run_experiment` did."""

    run_dir: str
    n_cells: int
    n_skipped: int  # done by an earlier, interrupted invocation
    n_run: int
    n_failed: int
    failed: tuple[str, ...]
    seconds: float
    #: (label, first line of the error) of every failed cell in the run folder, earlier invocations included.
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def all_failed(self) -> bool:
        """True when no cell of the run has results: every one failed."""
        return self.n_cells > 0 and len(self.errors) == self.n_cells


def run_experiment(
    experiment: Experiment,
    run_dir: str | Path,
    *,
    executor: Executor | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    progress: Callable | None = None,
    cell_progress: Callable | None = None,
    on_cell: Callable | None = None,
) -> RunSummary:
    """Run every grid cell of ``experiment`` not yet in ``run_dir``'s database.

    Args:
        executor: where cells run; :class:`LocalExecutor` (this process) by default.
        resume: continue the run in ``run_dir``; without it an existing run is refused.
        retry_failed: on resume, run the cells that failed before again.
        progress: tqdm-compatible factory for the grid bar (``progress(total=, initial=, desc=)``).
        cell_progress: tqdm-compatible factory passed to each cell (training, images).
        on_cell: called with each :class:`~cellbench.runner.cell.CellOutcome` once it is committed.
    """
    executor = executor or LocalExecutor()
    run_dir = Path(run_dir)
    db_path = run_dir / RESULTS_DB
    started = time.perf_counter()
    if db_path.exists():
        if not resume:
            raise DataError("run folder holds results already: pass --resume to continue it, or another --out",
                            path=run_dir)
        store = ResultStore.open(db_path)
        runs = store.runs()
        run_id = runs[0]["run_id"]
        if runs[0]["fingerprint"] != experiment.fingerprint:
            store.close()
            raise DataError(
                f"the experiment differs from the one this run was started with "
                f"({runs[0]['experiment_path'] or 'see experiment.json'}); resume needs the same experiment",
                path=run_dir,
            )
        if retry_failed:
            store.forget_failed(run_id)
    else:
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise DataError("run folder is not empty and holds no cellbench results", path=run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "experiment.json", json.dumps(experiment.to_dict(), indent=2).encode())
        store = ResultStore.create(db_path)
        run_id = store.create_run(experiment.to_dict(), name=experiment.name,
                                  fingerprint=experiment.fingerprint, path=experiment.source)
    cells = expand_grid(experiment)
    done = store.finished_cells(run_id)
    todo = [c for c in cells if c.key not in done]
    invocation = store.begin_invocation(run_id, executor=executor.describe(), resumed=bool(done) or resume)
    fn = functools.partial(run_cell, cache_root=str(run_dir / "cache"), progress=cell_progress)
    bar = progress(total=len(cells), initial=len(cells) - len(todo), desc=f"grid {experiment.name}") if progress else None
    failed = []
    status = "interrupted"
    try:
        for outcome in executor.map(fn, todo):
            store.record_cell(run_id, invocation, outcome)
            if outcome.status == "failed":
                failed.append(outcome.label)
                log.warning("grid entry %s failed: %s", outcome.label, outcome.error.splitlines()[0])
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{outcome.label} {outcome.status}")
            if on_cell is not None:
                on_cell(outcome)
        status = "finished"
        errors = tuple((c["label"], (c["error"] or "").splitlines()[0] if c["error"] else "")
                       for c in store.cells(run_id) if c["status"] == "failed")
    finally:
        if bar is not None:
            bar.close()
        store.end_invocation(invocation, status)
        store.close()
    return RunSummary(
        run_dir=str(run_dir),
        n_cells=len(cells),
        n_skipped=len(cells) - len(todo),
        n_run=len(todo),
        n_failed=len(failed),
        failed=tuple(failed),
        seconds=time.perf_counter() - started,
        errors=errors,
    )
