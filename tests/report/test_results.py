"""The report reads a run only through the runner's public store records, read-only."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

from runner_helpers import experiment_dict, write_tiny_dsb  # noqa: E402

import cellbench.report  # noqa: E402
import cellbench.runner  # noqa: E402
from cellbench.report import EntryEvaluation, load_results  # noqa: E402
from cellbench.runner import (  # noqa: E402
    RESULTS_DB,
    EntryOutcome,
    EvaluationRecord,
    ResultStore,
    expand_grid,
    experiment_from_dict,
)

REPORT_SOURCES = sorted(Path(cellbench.report.__file__).parent.glob("*.py"))


def test_report_imports_only_public_runner_names_at_module_top():
    assert REPORT_SOURCES
    for path in REPORT_SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cellbench.runner"):
                assert node.module == "cellbench.runner", f"{path.name}:{node.lineno} imports {node.module}"
                assert id(node) in top, f"{path.name}:{node.lineno} imports the runner inside a function"
                for alias in node.names:
                    assert alias.name in cellbench.runner.__all__, f"{path.name}: {alias.name} is not public"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("cellbench.runner") for a in node.names), path.name


def test_report_runs_no_sql_of_its_own():
    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET|WHERE)\b", re.IGNORECASE | re.DOTALL)
    for path in REPORT_SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not sql.search(node.value), f"{path.name}:{node.lineno}: SQL {node.value[:60]!r}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("query", "db", "execute"), f"{path.name}:{node.lineno}: .{node.attr}"


@pytest.fixture
def stored_run(tmp_path):
    """A run folder whose database holds one done grid entry (one evaluation) and one failed entry."""
    exp = experiment_from_dict(experiment_dict(write_tiny_dsb(tmp_path / "data")))
    done, failed = expand_grid(exp)[:2]
    evaluation = EvaluationRecord(split="test", ground_truth="overlap", flatten_policy=None, boundary_px=2,
                                  thresholds=(0.5,), n_images=2, predict_wall_s=0.25,
                                  result={"pooled": {"0.5": {"f1": 0.75}}, "iou_thresholds": [0.5]})
    run_dir = tmp_path / "run"
    with ResultStore.create(run_dir / RESULTS_DB) as store:
        run_id = store.create_run(exp.to_dict(), name=exp.name, fingerprint=exp.fingerprint, path=None)
        inv = store.begin_invocation(run_id, executor={"executor": "local"}, resumed=False)
        store.record_entry(run_id, inv, EntryOutcome(key=done.key, label=done.label, config=done.to_dict(),
                                                     status="done", evaluations=(evaluation,)))
        store.record_entry(run_id, inv, EntryOutcome(key=failed.key, label=failed.label, config=failed.to_dict(),
                                                     status="failed", error="RuntimeError: boom\nTraceback"))
        store.end_invocation(inv, "finished")
    return run_dir, done, failed, evaluation


def test_load_results_pairs_the_stored_records(stored_run, monkeypatch):
    run_dir, done, failed, evaluation = stored_run

    def no_writes(*args, **kwargs):
        raise AssertionError("the report opened the results database for writing")

    monkeypatch.setattr(ResultStore, "open", no_writes)
    results = load_results(run_dir)
    assert (results.name, results.experiment["name"]) == ("tiny", "tiny")
    assert [e.label for e in results.entries] == [done.label, failed.label]
    assert [e.label for e in results.failed] == [failed.label]
    (scored,) = results.evaluations
    assert isinstance(scored, EntryEvaluation)
    # the runner's record, read back as it was written: no second copy of its fields in the report
    assert type(scored.evaluation) is EvaluationRecord and scored.evaluation == evaluation
    assert scored.entry is results.entries[0]
    assert scored.setting() == ("dataset tiny, task all, split test, overlapping ground truth, "
                                "boundary rule: instances within 2 px of the border dropped")
    assert scored.context == ("tiny", "all", "test", "overlap", None, 2)
    (invocation,) = results.invocations
    assert (invocation.status, invocation.executor) == ("finished", {"executor": "local"})
    assert results == load_results(run_dir / RESULTS_DB)  # the folder or the file itself
