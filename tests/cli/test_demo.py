"""``cellbench demo``: the pipeline with a test method (fast), the exact README command with the
real methods (its scores are README's table), relative / absolute / ``~`` output folders, failing
grid entries, and its refusal to clobber a foreign folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cellbench.cli.demo import available_methods, run_demo
from cellbench.cli.main import main
from cellbench.errors import DataError

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

FAKE = {"threshold": {"method": "fake_methods:ThresholdMethod", "config": {"threshold": 120, "min_area": 40},
                      "regimes": ["zero-shot", "fine-tuned"]}}
GHOST = {"ghost": {"method": "no-such-method", "regimes": ["zero-shot"]}}
README = Path(__file__).parents[2] / "README.md"


def test_demo_pipeline_with_a_test_method(tmp_path):
    out = tmp_path / "demo"
    messages = []
    result = run_demo(out, glioma_images=4, methods=FAKE, log=messages.append)
    assert result["data"]["dsb2018"]["nuclei_per_split"] == {"train": 73, "test": 57}
    synth = result["data"]["glioma-c6-synth"]["images_per_split"]
    assert {k: v["n_images"] for k, v in synth.items()} == {"train": 1, "valid": 1, "test": 1, "gen": 1}
    # 2 datasets x 1 task x 1 method x 2 regimes; all done
    assert result["entries"] == 4 and result["failed"] == []
    # dsb: test; glioma: test + gen; x 2 kinds of ground truth x 2 regimes
    assert len(result["scores"]) == (1 + 2) * 2 * 2
    assert all(s["f1@0.5"] is not None for s in result["scores"])
    for name in ("experiment.yaml", "run/results.sqlite", "report/report.html", "report/tables/glioma_table2_overlap.csv",
                 "demo-summary.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "demo-summary.json").read_text())["report"] == str(out / "report" / "report.html")
    assert messages[-1].endswith(str(out / "report" / "report.html"))
    # the experiment file names its data relative to itself
    assert "path: data/dsb2018" in (out / "experiment.yaml").read_text()
    # the written experiment reruns as is: everything is already done
    assert main(["run", str(out / "experiment.yaml"), "--out", str(out / "run"), "--resume", "--quiet"]) == 0
    # a second demo replaces the first (refused before any work if the folder were foreign)
    with pytest.raises(DataError, match="no demo method can run here"):
        run_demo(out, methods=GHOST, log=lambda m: None)
    assert not (out / "run").exists()


def test_missing_methods_are_left_out_with_the_reason():
    ok, skipped = available_methods({**FAKE, **GHOST})
    assert list(ok) == ["threshold"]
    assert skipped == {"ghost": "not in this cellbench"}


def _fake_demo(monkeypatch, methods=FAKE):
    """``cellbench demo`` running ``methods`` instead of the real ones (same data, runner and report)."""
    import cellbench.cli.demo as demo

    monkeypatch.setattr(demo, "select_methods", lambda names: methods)


@pytest.mark.parametrize("how", ["relative", "absolute", "home"])
def test_demo_output_folder_relative_absolute_or_home(tmp_path, monkeypatch, capsys, how):
    _fake_demo(monkeypatch)
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir(), home.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    arg = {"relative": "out/demo", "absolute": str(tmp_path / "abs" / "demo"), "home": "~/demo"}[how]
    where = {"relative": work / "out" / "demo", "absolute": tmp_path / "abs" / "demo", "home": home / "demo"}[how]
    assert main(["demo", "--out", arg]) == 0
    summary = json.loads((where / "demo-summary.json").read_text())
    assert summary["failed"] == [] and summary["entries"] == 4 and len(summary["scores"]) == 12
    assert capsys.readouterr().out.rstrip().splitlines()[-1].endswith(str(where / "report" / "report.html"))
    # experiment.yaml reruns from any folder: its data paths are relative to the file
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(where / "experiment.yaml"), "--out", "rerun", "--quiet"]) == 0
    assert "0 failed of 4" in capsys.readouterr().out


def test_demo_where_every_entry_fails_exits_non_zero(tmp_path, monkeypatch, capsys):
    failing = {"broken": {**FAKE["threshold"], "config": {"fail": True}}}
    _fake_demo(monkeypatch, failing)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # progress bars go there too
    err = err[err.index("4 of 4 grid entries failed:"):]
    assert "RuntimeError: this method always fails" in err[1]
    assert str(tmp_path / "demo" / "run" / "results.sqlite") in err[-2]
    assert err[-1] == "cellbench: error: every grid entry failed; there are no results"


def test_demo_where_some_entries_fail_says_how_many_and_where(tmp_path, monkeypatch, capsys):
    some = {**FAKE, "broken": {**FAKE["threshold"], "config": {"fail": True}, "regimes": ["zero-shot"]}}
    _fake_demo(monkeypatch, some)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    captured = capsys.readouterr()
    assert captured.out.rstrip().splitlines()[-1].endswith("report.html")
    err = captured.err.strip().splitlines()
    err = err[err.index("2 of 6 grid entries failed:"):]
    assert len(err) == 4
    assert err[-1].startswith("full tracebacks: the report's 'Failed grid entries' section") and "results.sqlite" in err[-1]


def _readme_demo_table() -> str:
    text = README.read_text()
    found = re.search(r"<!-- demo-table:begin -->\n(.*?)<!-- demo-table:end -->", text, re.S)
    assert found, "README.md has no demo table between the demo-table markers"
    return found.group(1)


def test_readme_demo_table_is_a_scores_table():
    """The table in README has the shape `cellbench demo` writes (its numbers: the test below)."""
    table = _readme_demo_table().splitlines()
    assert table[0].startswith("| dataset | method | regime | test split | F1@0.5 |")
    rows = [r for r in table[2:] if r.strip()]
    # dsb2018 test + glioma test and gen, for watershed zero-shot / fine-tuned and cellpose fine-tuned
    assert len(rows) == 3 * 3, table


def test_the_readme_demo_command_from_a_fresh_folder(tmp_path):
    """`make demo` runs exactly this: `cellbench demo --out cellbench-demo`, from the working directory.

    Every grid entry must run, the last line must name the report, and README's demo table must be
    what this run prints (`demo-table.md`): a change that moves a score must update README.
    """
    cellbench = Path(sys.executable).with_name("cellbench")
    done = subprocess.run([str(cellbench), "demo", "--out", "cellbench-demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=1200, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "cellbench-demo"
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["failed"] == [] and summary["entries"] == 6, summary["errors"]
    assert set(summary["methods"]) == {"watershed", "cellpose"}, summary["skipped_methods"]
    assert done.stdout.rstrip().splitlines()[-1].endswith(str(out / "report" / "report.html"))
    assert (out / "report" / "report.html").is_file()
    assert (out / "demo-table.md").read_text() == _readme_demo_table(), (
        "README's demo table differs from what the demo printed; copy cellbench-demo/demo-table.md into README")


def test_demo_method_selection():
    from cellbench.cli.demo import DEMO_DEFAULT, select_methods

    assert tuple(select_methods(None)) == DEMO_DEFAULT
    assert list(select_methods("cellseg1, watershed")) == ["cellseg1", "watershed"]
    with pytest.raises(DataError, match="unknown demo method"):
        select_methods("watershed,nope")


def test_demo_refuses_a_foreign_folder(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(DataError, match="other than a cellbench demo"):
        run_demo(out, methods=FAKE, log=lambda m: None)
    assert [p.name for p in out.iterdir()] == ["thesis.docx"]
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_demo_cli_refuses_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    rc = main(["demo", "--out", str(out), "--images", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("cellbench: error: ") and str(out) in err
    assert (out / "notes.txt").read_text() == "x"
