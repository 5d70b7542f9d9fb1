"""The results database: versioned schema, refusals, one transaction per cell."""

from __future__ import annotations

import sqlite3

import pytest
from runner_helpers import experiment_dict

from cellbench.errors import DataError
from cellbench.runner import (
    SCHEMA_VERSION,
    CellOutcome,
    EvaluationRecord,
    ResultStore,
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


def _outcome(cell, result=FAKE_RESULT):
    ev = EvaluationRecord(split="test", ground_truth="overlap", flatten_policy=None, n_images=1,
                          predict_wall_s=0.5, result=result)
    return CellOutcome(key=cell.key, label=cell.label, config=cell.to_dict(), status="done",
                       train=None, evaluations=(ev,), started=0.0, finished=1.0)


@pytest.fixture
def store_and_cell(tmp_path, tiny_data):
    exp = experiment_from_dict(experiment_dict(tiny_data))
    store = ResultStore.create(tmp_path / "r.sqlite")
    run_id = store.create_run(exp.to_dict(), name=exp.name, fingerprint=exp.fingerprint, path=None)
    inv = store.begin_invocation(run_id, executor={"executor": "local"}, resumed=False)
    yield store, run_id, inv, expand_grid(exp)[0]
    store.close()


def test_scores_are_stored_tidy(store_and_cell):
    store, run_id, inv, cell = store_and_cell
    store.record_cell(run_id, inv, _outcome(cell))
    rows = store.query("SELECT scope, threshold, metric, value FROM scores WHERE metric IN ('f1', 'ap50')")
    assert sorted((r["scope"], r["threshold"], r["metric"]) for r in rows) == [
        ("coco", None, "ap50"), ("image_mean", 0.5, "f1"), ("pooled", 0.5, "f1")]
    img = store.query("SELECT * FROM image_scores")[0]
    assert (img["image"], img["tp"], img["fp"], img["n_pred"], img["extra_json"]) == ("a", 3, 1, 4, '{"pq": 0.8}')
    assert store.finished_cells(run_id) == {cell.key}


def test_a_cell_is_written_whole_or_not_at_all(store_and_cell):
    store, run_id, inv, cell = store_and_cell
    broken = dict(FAKE_RESULT, per_image=[{"n_gt": 1, "by_iou": {"0.5": {}}}])  # no image name: fails half-way through the writes
    with pytest.raises(KeyError):
        store.record_cell(run_id, inv, _outcome(cell, broken))
    for table in ("cells", "evaluations", "scores", "image_scores", "timings"):
        assert store.query(f"SELECT count(*) n FROM {table}")[0]["n"] == 0, table
    store.record_cell(run_id, inv, _outcome(cell))
    with pytest.raises(sqlite3.IntegrityError):  # a cell cannot be counted twice
        store.record_cell(run_id, inv, _outcome(cell))
    assert store.query("SELECT count(*) n FROM evaluations")[0]["n"] == 1


def test_other_schema_versions_are_refused(tmp_path):
    ResultStore.create(tmp_path / "r.sqlite").close()
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.close()
    with pytest.raises(DataError, match=f"schema version {SCHEMA_VERSION + 1}.*no migration"):
        ResultStore.open(tmp_path / "r.sqlite")


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
