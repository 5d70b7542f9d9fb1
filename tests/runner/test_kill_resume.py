"""`cellbench run` killed with SIGKILL mid-grid, then resumed: nothing redone, lost or doubled."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import yaml
from dbdump import db_content
from runner_helpers import experiment_dict

from cellbench.runner import experiment_from_dict, run_experiment


def _committed(db_path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute("SELECT count(*) FROM entries").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _cli(*args):
    return [sys.executable, "-m", "cellbench", *args]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_data, fake_methods_path):
    log = tmp_path / "calls.log"
    d = experiment_dict(tiny_data, log=log, sleep_s=0.4)
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(yaml.safe_dump(d, sort_keys=False))

    # the reference: the same experiment, uninterrupted (in this process)
    run_experiment(experiment_from_dict(d), tmp_path / "reference")
    reference = db_content(tmp_path / "reference" / "results.sqlite")
    log.rename(tmp_path / "reference.log")

    run = tmp_path / "run"
    db_path = run / "results.sqlite"
    proc = subprocess.Popen(_cli("run", str(exp_file), "--out", str(run), "--quiet"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _committed(db_path) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    n_before = _committed(db_path)
    assert 2 <= n_before < 9, "the kill must land mid-grid"

    resumed = subprocess.run(_cli("run", str(exp_file), "--out", str(run), "--resume", "--quiet"),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{9 - n_before} grid entries run, {n_before} already done" in resumed.stdout

    # nothing lost or counted twice: the same database content as the uninterrupted run
    assert db_content(db_path) == reference
    # nothing done was redone: every training finished once, every image predicted once
    lines = log.read_text().splitlines()
    ends = Counter(x for x in lines if x.startswith("train-end"))
    predicts = Counter(x for x in lines if x.startswith("predict"))
    assert len(ends) == 6 and set(ends.values()) == {1}, ends
    assert len(predicts) == 18 and set(predicts.values()) == {1}, predicts
    with sqlite3.connect(db_path) as db:
        statuses = db.execute("SELECT resumed, status FROM invocations ORDER BY invocation_id").fetchall()
    assert statuses == [(0, "running"), (1, "finished")]  # the killed invocation never got to say so
