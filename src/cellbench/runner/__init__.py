"""Benchmark runs: experiment files, the grid, executors, the results database, the cache.

>>> from cellbench.runner import LocalExecutor
>>> LocalExecutor().describe()
{'executor': 'local'}
"""

from cellbench.runner.cache import PredictionCache, instances_from_json, instances_to_json
from cellbench.runner.cell import CellOutcome, EvaluationRecord, run_cell
from cellbench.runner.executors import Executor, LocalExecutor, RayExecutor
from cellbench.runner.experiment import (
    DatasetSpec,
    EvaluationSpec,
    Experiment,
    MethodSpec,
    Regime,
    TestSpec,
    experiment_from_dict,
    load_experiment,
    resolve_method,
)
from cellbench.runner.grid import GridCell, expand_grid
from cellbench.runner.run import RESULTS_DB, RunSummary, run_experiment
from cellbench.runner.store import SCHEMA_VERSION, ResultStore, environment

__all__ = [
    "RESULTS_DB",
    "SCHEMA_VERSION",
    "CellOutcome",
    "DatasetSpec",
    "EvaluationRecord",
    "EvaluationSpec",
    "Executor",
    "Experiment",
    "GridCell",
    "LocalExecutor",
    "MethodSpec",
    "PredictionCache",
    "RayExecutor",
    "Regime",
    "ResultStore",
    "RunSummary",
    "TestSpec",
    "environment",
    "expand_grid",
    "experiment_from_dict",
    "instances_from_json",
    "instances_to_json",
    "load_experiment",
    "resolve_method",
    "run_cell",
    "run_experiment",
]
