"""``cellbench run``: what it says about failed grid entries points at the table that holds their tracebacks."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

from runner_helpers import experiment_dict, write_tiny_dsb  # noqa: E402

from cellbench.cli.main import main  # noqa: E402


def test_failed_entries_point_at_the_table_holding_their_tracebacks(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment_dict(write_tiny_dsb(tmp_path / "data"), fail=True), sort_keys=False))
    assert main(["run", str(exp), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "9 grid entries run, 0 already done, 3 failed of 9" in captured.out
    err = captured.err.strip().splitlines()
    err = err[err.index("3 of 9 grid entries failed:"):]
    table, column = re.search(r"\(table (\w+), column (\w+)\)", err[-1]).groups()
    assert (table, column) == ("entries", "error")
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        errors = [r[0] for r in db.execute(f"SELECT {column} FROM {table} WHERE status = 'failed'")]
    db.close()
    assert len(errors) == 3 and all("Traceback" in e for e in errors)


def test_run_help_says_grid_entries(capsys):
    texts = []
    for args in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            main(args)
        texts.append(" ".join(capsys.readouterr().out.split()))
    assert "run every grid entry of a benchmark experiment" in texts[0]
    assert "grid entries as Ray tasks" in texts[1] and "run failed grid entries again" in texts[1]
    assert not re.search(r"\bcells?\b", texts[1])


def test_seeds_on_the_command_line_replace_the_files(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment_dict(write_tiny_dsb(tmp_path / "data")), sort_keys=False))  # seeds [0]
    run = ["run", str(exp), "--out", str(tmp_path / "run"), "--quiet", "--seeds", "4,7"]
    assert main(run) == 0
    # 3 methods x (zero-shot once + two training regimes x 2 seeds)
    assert "15 grid entries run, 0 already done, 0 failed of 15" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        seeds = sorted({r[0] for r in db.execute("SELECT seed FROM entries")})
    db.close()
    assert seeds == [4, 7]
    assert main([*run, "--resume"]) == 0
    assert "0 grid entries run, 15 already done" in capsys.readouterr().out
    for bad in ("4,4", "x", ""):
        with pytest.raises(SystemExit):
            main(["run", str(exp), "--seeds", bad])
        assert "seeds" in capsys.readouterr().err
