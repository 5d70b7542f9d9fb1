"""Benchmark runs: experiment files, the grid of entries, executors, the results database, the cache.

>>> from cellbench.runner import LocalExecutor
>>> LocalExecutor().describe()
{'executor': 'local'}
"""

from cellbench.runner.cache import PredictionCache, instances_from_json, instances_to_json
from cellbench.runner.entry import EntryOutcome, run_entry
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
from cellbench.runner.grid import GridEntry, expand_grid, seed_matters
from cellbench.runner.records import EntryRecord, EvaluationRecord, InvocationRecord, RunRecord, TrainingRecord
from cellbench.runner.run import RESULTS_DB, RunSummary, run_experiment
from cellbench.runner.store import SCHEMA_VERSION, ResultStore, environment

__all__ = [
    "RESULTS_DB",
    "SCHEMA_VERSION",
    "DatasetSpec",
    "EntryOutcome",
    "EntryRecord",
    "EvaluationRecord",
    "EvaluationSpec",
    "Executor",
    "Experiment",
    "GridEntry",
    "InvocationRecord",
    "LocalExecutor",
    "MethodSpec",
    "PredictionCache",
    "RayExecutor",
    "Regime",
    "ResultStore",
    "RunRecord",
    "RunSummary",
    "TestSpec",
    "TrainingRecord",
    "environment",
    "expand_grid",
    "experiment_from_dict",
    "instances_from_json",
    "instances_to_json",
    "load_experiment",
    "resolve_method",
    "run_entry",
    "run_experiment",
    "seed_matters",
]
