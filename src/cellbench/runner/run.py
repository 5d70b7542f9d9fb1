"""Running an experiment into a run folder, resumably.

A run folder holds ``results.sqlite`` (the scores, see :mod:`cellbench.runner.store`),
``experiment.json`` (the experiment as run) and ``cache/`` (trained models and
predictions). Why a resumed run loses nothing and counts nothing twice:

* a grid entry's results are committed in one transaction when the entry finishes,
  and a committed entry is skipped on resume (its key is in ``entries``);
* an entry interrupted half-way left only whole files in the cache (atomic
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
from cellbench.files import LOCK_FILE, atomic_write_bytes, folder_lock
from cellbench.runner.entry import run_entry
from cellbench.runner.executors import Executor, LocalExecutor
from cellbench.runner.experiment import Experiment
from cellbench.runner.grid import expand_grid
from cellbench.runner.store import PARTIAL_PREFIX, ResultStore

__all__ = ["RESULTS_DB", "RunSummary", "run_experiment"]

log = logging.getLogger(__name__)

RESULTS_DB = "results.sqlite"


@dataclass(frozen=True)
class RunSummary:
    """What one call of :func:`run_experiment` did."""

    run_dir: str
    n_entries: int
    n_skipped: int  # done by an earlier, interrupted invocation
    n_run: int
    n_failed: int
    failed: tuple[str, ...]
    seconds: float
    #: (label, first line of the error) of every failed grid entry in the run folder, earlier invocations included.
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def all_failed(self) -> bool:
        """True when no grid entry of the run has results: every one failed."""
        return self.n_entries > 0 and len(self.errors) == self.n_entries


def run_experiment(
    experiment: Experiment,
    run_dir: str | Path,
    *,
    executor: Executor | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    progress: Callable | None = None,
    entry_progress: Callable | None = None,
    on_entry: Callable | None = None,
) -> RunSummary:
    """Run every grid entry of ``experiment`` not yet in ``run_dir``'s database.

    Args:
        executor: where grid entries run; :class:`LocalExecutor` (this process) by default.
        resume: continue the run in ``run_dir``; without it an existing run is refused.
        retry_failed: on resume, run the grid entries that failed before again.
        progress: tqdm-compatible factory for the grid bar (``progress(total=, initial=, desc=)``).
        entry_progress: tqdm-compatible factory passed to each grid entry (training, images).
        on_entry: called with each :class:`~cellbench.runner.entry.EntryOutcome` once it is committed.

    One process at a time writes a run folder: a second one is refused with the
    pid of the first (a lock the system releases when that process dies).
    """
    run_dir = Path(run_dir)
    with folder_lock(run_dir, what="run folder"):
        return _run_locked(experiment, run_dir, executor=executor or LocalExecutor(), resume=resume,
                           retry_failed=retry_failed, progress=progress, entry_progress=entry_progress,
                           on_entry=on_entry)


def _run_locked(experiment: Experiment, run_dir: Path, *, executor: Executor, resume: bool, retry_failed: bool,
                progress: Callable | None, entry_progress: Callable | None, on_entry: Callable | None) -> RunSummary:
    db_path = run_dir / RESULTS_DB
    started = time.perf_counter()
    if db_path.exists():
        if not resume:
            raise DataError("run folder holds results already: pass --resume to continue it, or another --out",
                            path=run_dir)
        store = ResultStore.open(db_path)
        runs = store.runs()
        run_id = runs[0].run_id
        if runs[0].fingerprint != experiment.fingerprint:
            store.close()
            raise DataError(
                f"the experiment differs from the one this run was started with "
                f"({runs[0].experiment_path or 'see experiment.json'}); resume needs the same experiment",
                path=run_dir,
            )
        if retry_failed:
            store.forget_failed(run_id)
    else:
        # the lock file and a partial database left by a process killed while creating it do not count
        if run_dir.is_dir() and any(p.name != LOCK_FILE and not p.name.startswith(PARTIAL_PREFIX)
                                    for p in run_dir.iterdir()):
            raise DataError("run folder is not empty and holds no cellbench results", path=run_dir)
        store = ResultStore.create(db_path, run={"experiment": experiment.to_dict(), "name": experiment.name,
                                                 "fingerprint": experiment.fingerprint, "path": experiment.source})
        run_id = store.runs()[0].run_id
    if not (run_dir / "experiment.json").exists():  # written after the database, so a resume completes it
        atomic_write_bytes(run_dir / "experiment.json", json.dumps(experiment.to_dict(), indent=2).encode())
    entries = expand_grid(experiment)
    done = store.finished_entries(run_id)
    todo = [e for e in entries if e.key not in done]
    invocation = store.begin_invocation(run_id, executor=executor.describe(), resumed=bool(done) or resume)
    fn = functools.partial(run_entry, cache_root=str(run_dir / "cache"), progress=entry_progress)
    bar = progress(total=len(entries), initial=len(entries) - len(todo), desc=f"grid {experiment.name}") if progress else None
    failed = []
    status = "interrupted"
    try:
        for outcome in executor.map(fn, todo):
            store.record_entry(run_id, invocation, outcome)
            if outcome.status == "failed":
                failed.append(outcome.label)
                log.warning("grid entry %s failed: %s", outcome.label, outcome.error.splitlines()[0])
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{outcome.label} {outcome.status}")
            if on_entry is not None:
                on_entry(outcome)
        status = "finished"
        errors = tuple((e.label, e.error.splitlines()[0] if e.error else "")
                       for e in store.entries(run_id) if e.status == "failed")
    finally:
        if bar is not None:
            bar.close()
        store.end_invocation(invocation, status)
        store.close()
    return RunSummary(
        run_dir=str(run_dir),
        n_entries=len(entries),
        n_skipped=len(entries) - len(todo),
        n_run=len(todo),
        n_failed=len(failed),
        failed=tuple(failed),
        seconds=time.perf_counter() - started,
        errors=errors,
    )
