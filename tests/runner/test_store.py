"""The results database: versioned schema, refusals, one transaction per grid entry, the record readers."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from runner_helpers import experiment_dict

from cellbench.errors import DataError
from cellbench.runner import (
    SCHEMA_VERSION,
    EntryOutcome,
    EntryRecord,
    EvaluationRecord,
    InvocationRecord,
    ResultStore,
    TrainingRecord,
    expand_grid,
    experiment_from_dict,
)

FAKE_RESULT = {
    "iou_thresholds": [0.5],
    "settings": {"boundary_px": 0},
    "pooled": {"0.5": {"tp": 3, "fp": 1, "fn": 0, "precision": 0.75, "recall": 1.0, "f1": 6 / 7, "ap_dsb": 0.75}},
    "image_mean": {"0.5": {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "f1_median": 6 / 7, "f1_std": 0.0,
                           "dice": 0.9, "n_images": 1}},
    "per_image": [{"image": "a", "n_gt": 3, "n_pred": 4, "dice": 0.9,
                   "by_iou": {"0.5": {"tp": 3, "fp": 1, "fn": 0, "precision": 0.75, "recall": 1.0, "f1": 6 / 7,
                                      "ap_dsb": 0.75, "pq": 0.8}}}],
    "coco": {"map": 0.5, "ap50": 0.7, "ap75": 0.4, "ar50": 0.8, "ar75": 0.6, "max_dets": 3000},
}


TRAIN = {"wall_s": 2.5, "images": ["train0"], "history": {"epochs": [{"epoch": 0, "loss": 1.0}]},
         "resumed_from_cache": False}


def _evaluation(result=FAKE_RESULT):
    return EvaluationRecord(split="test", ground_truth="overlap", flatten_policy=None, boundary_px=0,
                            thresholds=(0.5,), n_images=1, predict_wall_s=0.5, result=result)


def _outcome(entry, result=FAKE_RESULT, train=None):
    return EntryOutcome(key=entry.key, label=entry.label, config=entry.to_dict(), status="done",
                        train=train, evaluations=(_evaluation(result),), started=0.0, finished=1.0)


@pytest.fixture
def store_and_entry(tmp_path, tiny_data):
    exp = experiment_from_dict(experiment_dict(tiny_data))
    store = ResultStore.create(tmp_path / "r.sqlite")
    run_id = store.create_run(exp.to_dict(), name=exp.name, fingerprint=exp.fingerprint, path=None)
    inv = store.begin_invocation(run_id, executor={"executor": "local"}, resumed=False)
    yield store, run_id, inv, expand_grid(exp)[0]
    store.close()


def test_scores_are_stored_tidy(store_and_entry):
    store, run_id, inv, entry = store_and_entry
    store.record_entry(run_id, inv, _outcome(entry))
    rows = store.query("SELECT scope, threshold, metric, value FROM scores WHERE metric IN ('f1', 'ap50')")
    assert sorted((r["scope"], r["threshold"], r["metric"]) for r in rows) == [
        ("coco", None, "ap50"), ("image_mean", 0.5, "f1"), ("pooled", 0.5, "f1")]
    img = store.query("SELECT * FROM image_scores")[0]
    assert (img["image"], img["tp"], img["fp"], img["n_pred"], img["extra_json"]) == ("a", 3, 1, 4, '{"pq": 0.8}')
    assert store.finished_entries(run_id) == {entry.key}


def test_a_grid_entry_is_written_whole_or_not_at_all(store_and_entry):
    store, run_id, inv, entry = store_and_entry
    broken = dict(FAKE_RESULT, per_image=[{"n_gt": 1, "by_iou": {"0.5": {}}}])  # no image name: fails half-way through the writes
    with pytest.raises(KeyError):
        store.record_entry(run_id, inv, _outcome(entry, broken))
    for table in ("entries", "evaluations", "scores", "image_scores", "timings"):
        assert store.query(f"SELECT count(*) n FROM {table}")[0]["n"] == 0, table
    store.record_entry(run_id, inv, _outcome(entry))
    with pytest.raises(sqlite3.IntegrityError):  # a grid entry cannot be counted twice
        store.record_entry(run_id, inv, _outcome(entry))
    assert store.query("SELECT count(*) n FROM evaluations")[0]["n"] == 1


def _set_version(path, version) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.close()


def test_the_schema_names_grid_entries_not_cells(tmp_path):
    """Version 2 renamed the version-1 table ``cells`` and column ``cell_key``: "cell" is a biological cell."""
    assert SCHEMA_VERSION == 2
    with ResultStore.create(tmp_path / "r.sqlite") as store:
        schema = " ".join(r["sql"] for r in store.query("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
        tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "cell" not in schema.lower()
    assert {"entries", "trainings", "evaluations", "timings"} <= tables
    assert schema.count("entry_key") >= 4


@pytest.mark.parametrize("opener", [ResultStore.open, ResultStore.open_readonly])
def test_other_schema_versions_are_refused(tmp_path, opener):
    path = tmp_path / "r.sqlite"
    ResultStore.create(path).close()
    _set_version(path, 1)  # a run made before the grid-entry schema
    with pytest.raises(DataError, match="schema version 1: the run was made by an older cellbench.*no migration"
                                       ".*the run must be rerun") as refused:
        opener(path)
    assert str(path) in str(refused.value)
    _set_version(path, SCHEMA_VERSION + 1)
    with pytest.raises(DataError, match=f"schema version {SCHEMA_VERSION + 1}: the run was made by a newer cellbench"):
        opener(path)


def test_foreign_files_are_refused(tmp_path):
    (tmp_path / "x.sqlite").write_text("not a database at all, just text" * 10)
    with pytest.raises(DataError, match="not a cellbench results database"):
        ResultStore.open(tmp_path / "x.sqlite")
    with sqlite3.connect(tmp_path / "y.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.close()
    with pytest.raises(DataError, match="no schema version"):
        ResultStore.open(tmp_path / "y.sqlite")
    with pytest.raises(DataError, match="no results database"):
        ResultStore.open(tmp_path / "missing.sqlite")
    with pytest.raises(DataError, match="exists already"):
        ResultStore.create(tmp_path / "x.sqlite")


def test_records_read_back_equal_the_records_written(store_and_entry):
    """One record type per stored evaluation: what the runner wrote is what every reader gets back."""
    store, run_id, inv, entry = store_and_entry
    outcome = _outcome(entry, train=TRAIN)
    store.record_entry(run_id, inv, outcome)
    store.end_invocation(inv, "finished")
    path = store.path
    store.db.commit()
    with ResultStore.open_readonly(path) as ro:
        (run,) = ro.runs()
        assert (run.run_id, run.name, run.experiment["name"]) == (run_id, "tiny", "tiny")
        assert ro.evaluations(run_id) == {entry.key: outcome.evaluations}
        assert ro.trainings(run_id) == {entry.key: TrainingRecord(
            wall_s=2.5, n_images=1, images=("train0",), history=TRAIN["history"], resumed_from_cache=False)}
        (stored,) = ro.entries(run_id)
        assert isinstance(stored, EntryRecord)
        assert (stored.key, stored.label, stored.status, stored.error) == (entry.key, entry.label, "done", None)
        assert (stored.dataset, stored.task, stored.method, stored.regime, stored.seed) == (
            "tiny", "all", entry.method.name, entry.regime.name, 0)
        assert stored.config == entry.to_dict() and stored.layout == "dsb"
        assert stored.training == ro.trainings(run_id)[entry.key]
        assert stored.model == f"{entry.method.name} ({entry.regime.name})"
        (invocation,) = ro.invocations(run_id)
        assert isinstance(invocation, InvocationRecord)
        assert (invocation.status, invocation.resumed, invocation.executor) == ("finished", False, {"executor": "local"})
        assert invocation.environment["packages"]["numpy"]


def test_open_readonly_never_writes(store_and_entry):
    store, run_id, inv, entry = store_and_entry
    store.record_entry(run_id, inv, _outcome(entry))
    before = store.path.read_bytes()
    with ResultStore.open_readonly(store.path) as ro:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.forget_failed(run_id)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.record_entry(run_id, inv, _outcome(entry))
        assert ro.finished_entries(run_id) == {entry.key}
    assert store.path.read_bytes() == before


def test_open_readonly_reads_the_last_commit_after_a_killed_writer(store_and_entry):
    """A writer killed mid-transaction leaves a hot journal; a read-only reader still gets the committed state."""
    store, run_id, inv, entry = store_and_entry
    store.record_entry(run_id, inv, _outcome(entry))
    path = store.path
    store.close()
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA cache_size = 1')\n"  # changed pages spill into the database file
        "db.execute('BEGIN')\n"
        "db.execute(\"UPDATE entries SET status = 'failed', label = 'half-written'\")\n"
        "db.execute('DELETE FROM image_scores')\n"
        "os.kill(os.getpid(), 9)\n"), str(path)])
    assert killed.returncode == -9
    assert path.with_name(path.name + "-journal").exists()  # the interrupted transaction's journal
    with ResultStore.open_readonly(path) as ro:
        (stored,) = ro.entries(run_id)
    assert (stored.label, stored.status) == (entry.label, "done")
    assert not os.path.exists(str(path) + "-journal")
