"""A run's results as small records, read from its database, for tables and plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cellbench.errors import DataError
from cellbench.metrics import threshold_key  # re-exported: tables and plots key thresholds as the metrics do

__all__ = ["CellRecord", "EvalRecord", "RunResults", "load_results", "threshold_key"]


@dataclass(frozen=True)
class CellRecord:
    """One grid cell: what ran, whether it worked, its training record."""

    key: str
    label: str
    dataset: str
    layout: str
    task: str
    method: str
    method_impl: str
    regime: str
    train_images: int | None
    seed: int
    status: str
    error: str | None
    config: dict
    train_wall_s: float | None = None
    train_n_images: int | None = None
    history: dict | None = None

    @property
    def model(self) -> str:
        """How the report names this cell's model: method label and regime (and seed when not 0)."""
        return f"{self.method} ({self.regime}{'' if self.seed == 0 else f', seed {self.seed}'})"


@dataclass(frozen=True)
class EvalRecord:
    """One cell scored on one split against one kind of ground truth."""

    cell: CellRecord
    evaluation_id: int
    split: str | None
    ground_truth: str
    flatten_policy: str | None
    boundary_px: int
    thresholds: tuple[float, ...]
    n_images: int
    predict_wall_s: float | None
    result: dict = field(repr=False)

    @property
    def context(self) -> tuple:
        """Everything but the model: rows sharing it are comparable."""
        c = self.cell
        return (c.dataset, c.task, self.split, self.ground_truth, self.flatten_policy, self.boundary_px)

    def setting(self) -> str:
        """The setting in words, for captions."""
        c = self.cell
        gt = "overlapping ground truth" if self.ground_truth == "overlap" else f"ground truth flattened ({self.flatten_policy})"
        boundary = f"boundary rule: instances within {self.boundary_px} px of the border dropped" if self.boundary_px else "boundary rule: off"
        return f"dataset {c.dataset}, task {c.task}, split {self.split or 'all'}, {gt}, {boundary}"


@dataclass(frozen=True)
class RunResults:
    """Everything a report needs from a run folder."""

    run_dir: Path
    name: str
    experiment: dict
    cells: tuple[CellRecord, ...]
    evaluations: tuple[EvalRecord, ...]
    invocations: tuple[dict, ...]

    @property
    def failed(self) -> tuple[CellRecord, ...]:
        return tuple(c for c in self.cells if c.status == "failed")


def load_results(run_dir: str | Path) -> RunResults:
    """Read ``run_dir/results.sqlite`` (a run folder, or the database file itself)."""
    from cellbench.runner.run import RESULTS_DB
    from cellbench.runner.store import ResultStore

    path = Path(run_dir)
    db_path = path if path.is_file() else path / RESULTS_DB
    if not db_path.is_file():
        raise DataError(f"no {RESULTS_DB} here: not a cellbench run folder", path=path)
    with ResultStore.open(db_path) as store:
        runs = store.runs()
        if not runs:
            raise DataError("results database holds no run", path=db_path)
        run = runs[0]
        experiment = json.loads(run["experiment_json"])
        layouts = {name: d["layout"] for name, d in _datasets(experiment).items()}
        cells = {}
        for r in store.query(
            "SELECT c.*, t.wall_s AS train_wall_s, t.n_images AS train_n_images, t.history_json "
            "FROM cells c LEFT JOIN trainings t USING (run_id, cell_key) WHERE c.run_id = ? ORDER BY c.rowid",
            (run["run_id"],),
        ):
            cells[r["cell_key"]] = CellRecord(
                key=r["cell_key"], label=r["label"], dataset=r["dataset"], layout=layouts.get(r["dataset"], ""),
                task=r["task"], method=r["method"], method_impl=r["method_impl"], regime=r["regime"],
                train_images=r["train_images"], seed=r["seed"], status=r["status"], error=r["error"],
                config=json.loads(r["config_json"]), train_wall_s=r["train_wall_s"],
                train_n_images=r["train_n_images"],
                history=json.loads(r["history_json"]) if r["history_json"] else None,
            )
        evaluations = tuple(
            EvalRecord(
                cell=cells[r["cell_key"]], evaluation_id=r["evaluation_id"], split=r["split"],
                ground_truth=r["ground_truth"], flatten_policy=r["flatten_policy"], boundary_px=r["boundary_px"],
                thresholds=tuple(json.loads(r["thresholds_json"])), n_images=r["n_images"],
                predict_wall_s=r["predict_wall_s"], result=json.loads(r["result_json"]),
            )
            for r in store.query("SELECT * FROM evaluations WHERE run_id = ? ORDER BY evaluation_id", (run["run_id"],))
        )
        invocations = tuple(store.query("SELECT * FROM invocations WHERE run_id = ? ORDER BY invocation_id",
                                        (run["run_id"],)))
    return RunResults(
        run_dir=db_path.parent, name=run["name"], experiment=experiment, cells=tuple(cells.values()),
        evaluations=evaluations, invocations=invocations,
    )


def _datasets(experiment: dict) -> dict:
    return {d["name"]: d for d in experiment.get("datasets", [])}
