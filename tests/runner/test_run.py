"""Running a grid in this process: scores stored with their config, failures recorded, resume."""

from __future__ import annotations

import json

import pytest
from dbdump import db_content
from runner_helpers import experiment_dict

from cellbench.errors import DataError
from cellbench.runner import (
    PredictionCache,
    ResultStore,
    expand_grid,
    experiment_from_dict,
    run_entry,
    run_experiment,
)


def _log_lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_run_stores_every_score_with_its_config(tmp_path, tiny_data):
    log = tmp_path / "calls.log"
    exp = experiment_from_dict(experiment_dict(tiny_data, log=log, fail=True))
    seen = []
    summary = run_experiment(exp, tmp_path / "run", on_entry=seen.append)
    assert (summary.n_entries, summary.n_run, summary.n_skipped, summary.n_failed) == (9, 9, 0, 3)
    assert len(seen) == 9
    with ResultStore.open(tmp_path / "run" / "results.sqlite") as store:
        entries = store.entries(1)
        assert [e.status for e in entries] == ["done"] * 6 + ["failed"] * 3
        failed = entries[-1]
        assert failed.error.startswith("RuntimeError: this method always fails")
        assert "Traceback" in failed.error
        config = entries[1].config
        assert config["method"]["config"]["threshold"] == 60
        assert config["method"]["resolved_config"] == {"threshold": 60, "sleep_s": 0.0, "log": str(log), "fail": False, "min_area": 0}
        assert config["regime"] == {"name": "one", "train_images": 1}
        assert config["evaluation"]["thresholds"] == [0.5, 0.7, 0.75, 0.9]
        # 6 done grid entries x 1 split x 2 kinds of ground truth
        evs = store.query("SELECT * FROM evaluations")
        assert len(evs) == 12
        assert {e["ground_truth"] for e in evs} == {"overlap", "flattened"}
        assert {e["flatten_policy"] for e in evs if e["ground_truth"] == "flattened"} == {"priority-last"}
        trained = store.query("SELECT entry_key, n_images, images_json FROM trainings ORDER BY rowid")
        assert [t["n_images"] for t in trained] == [1, 3, 1, 3]
        # a trained low threshold finds every disk: pooled F1 1 at IoU 0.5
        f1 = store.query(
            "SELECT s.value FROM scores s JOIN evaluations e USING (evaluation_id) JOIN entries c USING (entry_key) "
            "WHERE c.label = 'tiny/all/low/all/seed0' AND s.scope = 'pooled' AND s.threshold = 0.5 "
            "AND s.metric = 'f1' AND s.class = '' AND e.ground_truth = 'overlap'")
        assert [r["value"] for r in f1] == [1.0]
        images = store.query("SELECT DISTINCT image FROM image_scores ORDER BY image")
        assert [r["image"] for r in images] == ["test0", "test1"]
        phases = store.query("SELECT phase, count(*) n FROM timings GROUP BY phase ORDER BY phase")
        assert [(p["phase"], p["n"]) for p in phases] == [("predict", 6), ("train", 4)]
        inv = store.query("SELECT * FROM invocations")
        assert len(inv) == 1 and inv[0]["status"] == "finished"
        assert json.loads(inv[0]["environment_json"])["packages"]["numpy"]
    # each training grid entry trained once (broken trains, then fails to predict), each (entry, image) predicted once
    lines = _log_lines(log)
    assert sum(line.startswith("train-end") for line in lines) == 6
    assert len([x for x in lines if x.startswith("predict")]) == 12


def test_evaluation_metrics_are_scored_and_stored(tmp_path, tiny_data):
    d = experiment_dict(tiny_data)
    d["methods"] = {"low": d["methods"]["low"]}
    d["evaluation"]["metrics"] = ["matching", "aji", "pq_canonical", "bf"]
    run_experiment(experiment_from_dict(d), tmp_path / "run")
    with ResultStore.open(tmp_path / "run" / "results.sqlite") as store:
        stored = {r["metric"] for r in store.query("SELECT DISTINCT metric FROM scores WHERE scope = 'pooled'")}
        ev = store.evaluations(1)
    assert {"f1", "aji", "pq_canonical", "bf", "bf_precision", "bf_recall"} <= stored
    assert "dice" not in stored  # the metrics named, not the default ones
    record = next(iter(ev.values()))[0]
    assert set(record.result["settings"]["metrics"]) == {"matching", "aji", "pq_canonical", "bf"}


def test_resume_skips_done_entries_and_refuses_other_experiments(tmp_path, tiny_data):
    log = tmp_path / "calls.log"
    d = experiment_dict(tiny_data, log=log, fail=True)
    exp = experiment_from_dict(d)
    run_experiment(exp, tmp_path / "run")
    before = db_content(tmp_path / "run" / "results.sqlite")
    n_lines = len(_log_lines(log))
    with pytest.raises(DataError, match="pass --resume"):
        run_experiment(exp, tmp_path / "run")
    summary = run_experiment(exp, tmp_path / "run", resume=True)
    assert (summary.n_run, summary.n_skipped) == (0, 9)
    assert len(_log_lines(log)) == n_lines
    assert db_content(tmp_path / "run" / "results.sqlite") == before
    d["evaluation"]["boundary_px"] = 2
    with pytest.raises(DataError, match="experiment differs"):
        run_experiment(experiment_from_dict(d), tmp_path / "run", resume=True)
    # failed grid entries run again only when asked
    summary = run_experiment(exp, tmp_path / "run", resume=True, retry_failed=True)
    assert (summary.n_run, summary.n_failed) == (3, 3)


def test_refuses_a_foreign_folder(tmp_path, tiny_data):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "thesis.tex").write_text("x")
    with pytest.raises(DataError, match="holds no cellbench results"):
        run_experiment(experiment_from_dict(experiment_dict(tiny_data)), tmp_path / "run")


def test_entry_reuses_cached_model_and_predictions(tmp_path, tiny_data):
    """A grid entry killed after training (or after some images) picks up from the cache."""
    log = tmp_path / "calls.log"
    entry = next(e for e in expand_grid(experiment_from_dict(experiment_dict(tiny_data, log=log)))
                 if e.label == "tiny/all/low/all/seed0")
    first = run_entry(entry, cache_root=tmp_path / "cache")
    assert first.status == "done" and first.train["resumed_from_cache"] is False
    cache = PredictionCache(tmp_path / "cache", entry.key)
    (cache.folder / "pred" / "test" / "test1.json").unlink()  # as if killed before the last image
    second = run_entry(entry, cache_root=tmp_path / "cache")
    assert second.train["resumed_from_cache"] is True
    assert second.train["history"] == first.train["history"]
    assert [e.result for e in second.evaluations] == [e.result for e in first.evaluations]
    lines = _log_lines(log)
    assert sum(x.startswith("train-end") for x in lines) == 1
    assert sum(x.startswith("predict") for x in lines) == 3  # two images, then the missing one again


def test_too_few_training_images_is_a_recorded_failure(tmp_path, tiny_data):
    d = experiment_dict(tiny_data)
    d["regimes"] = {"ten": {"train_images": 10}}
    d["methods"] = {"low": d["methods"]["low"]}
    summary = run_experiment(experiment_from_dict(d), tmp_path / "run")
    assert summary.n_failed == 1
    with ResultStore.open(tmp_path / "run" / "results.sqlite") as store:
        assert "regime asks for 10 training images, the training split has 3" in store.entries(1)[0].error


def test_a_run_killed_while_creating_its_database_starts_again_cleanly(tmp_path, tiny_data, monkeypatch):
    """The database is built in a hidden partial file and renamed: a kill before the rename leaves only that
    file (and the lock file), which neither blocks a new run nor is taken for results."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".partial-results.sqlite").write_bytes(b"SQLite format 3\x00 half written")
    (run / ".partial-results.sqlite-journal").write_bytes(b"")
    (run / ".cellbench.lock").write_text("")
    exp = experiment_from_dict(experiment_dict(tiny_data))
    summary = run_experiment(exp, run)
    assert summary.n_run == summary.n_entries > 0
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".partial")) == []
    with ResultStore.open(run / "results.sqlite") as store:
        assert [r.fingerprint for r in store.runs()] == [exp.fingerprint]
    assert json.loads((run / "experiment.json").read_text()) == exp.to_dict()
