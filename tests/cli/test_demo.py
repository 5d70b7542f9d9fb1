"""``cellbench demo``: the pipeline with a test method (fast), with the real methods (slow),
and its refusal to clobber a foreign folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cellbench.cli.demo import available_methods, run_demo
from cellbench.cli.main import main
from cellbench.errors import DataError

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

FAKE = {"threshold": ("fake_methods:ThresholdMethod", {"threshold": 120, "min_area": 40}, ["zero-shot", "fine-tuned"])}


def test_demo_pipeline_with_a_test_method(tmp_path):
    out = tmp_path / "demo"
    messages = []
    result = run_demo(out, glioma_images=4, methods=FAKE, log=messages.append)
    assert result["data"]["dsb2018"]["nuclei_per_split"] == {"train": 73, "test": 57}
    synth = result["data"]["glioma-c6-synth"]["images_per_split"]
    assert {k: v["n_images"] for k, v in synth.items()} == {"train": 1, "valid": 1, "test": 1, "gen": 1}
    # 2 datasets x 1 task x 1 method x 2 regimes; all done
    assert result["cells"] == 4 and result["failed"] == []
    # dsb: test; glioma: test + gen; x 2 kinds of ground truth x 2 regimes
    assert len(result["scores"]) == (1 + 2) * 2 * 2
    assert all(s["f1@0.5"] is not None for s in result["scores"])
    for name in ("experiment.yaml", "run/results.sqlite", "report/report.html", "report/tables/glioma_table2_overlap.csv",
                 "demo-summary.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "demo-summary.json").read_text())["report"] == str(out / "report" / "report.html")
    assert messages[-1].endswith(str(out / "report" / "report.html"))
    # the written experiment reruns as is: everything is already done
    assert main(["run", str(out / "experiment.yaml"), "--out", str(out / "run"), "--resume", "--quiet"]) == 0
    # a second demo replaces the first (refused before any work if the folder were foreign)
    with pytest.raises(DataError, match="no demo method can run here"):
        run_demo(out, methods={"ghost": ("no-such-method", {}, ["zero-shot"])}, log=lambda m: None)
    assert not (out / "run").exists()


def test_missing_methods_are_left_out_with_the_reason():
    ok, skipped = available_methods({**FAKE, "ghost": ("no-such-method", {}, ["zero-shot"])})
    assert list(ok) == ["threshold"]
    assert skipped == {"ghost": "not in this cellbench"}


@pytest.mark.slow
def test_run_demo_with_the_real_methods(tmp_path):
    result = run_demo(tmp_path / "demo", log=lambda m: None)
    assert result["failed"] == []
    assert result["seconds"] < 600
    assert set(result["methods"]) == {"watershed", "cellpose"}, result["skipped_methods"]


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
