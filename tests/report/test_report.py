"""`cellbench run` then `cellbench report` on the tiny grid: files, numbers, self-contained HTML."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import yaml

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

from runner_helpers import experiment_dict, write_tiny_dsb  # noqa: E402

from cellbench.cli.main import main  # noqa: E402
from cellbench.errors import DataError  # noqa: E402
from cellbench.report import write_report  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    data = write_tiny_dsb(tmp / "data")
    exp = tmp / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment_dict(data, fail=True, coco=True), sort_keys=False))
    assert main(["run", str(exp), "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp / "run"


def _csv(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")  # the caption
    return list(csv.DictReader(lines[1:]))


def test_report_files_and_numbers(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    assert "report.html" in capsys.readouterr().out
    out = tmp_path / "rep"
    rows = {r["Model"]: r for r in _csv(out / "tables" / "glioma_table2_overlap.csv")}
    # trained thresholds find every disk exactly; 200 (zero-shot) finds none
    for model in ("low (one)", "low (all)", "high (one)", "high (all)"):
        assert [float(rows[model][k]) for k in ("Prec.", "Rec.", "F1", "AP@50", "AP@75", "AP@90")] == [100.0] * 6
        assert rows[model]["Glioma-ft"] == "yes"
    assert float(rows["high (zero-shot)"]["Rec."]) == 0.0 and rows["high (zero-shot)"]["Glioma-ft"] == "no"
    assert "broken (one)" not in rows
    failures = _csv(out / "tables" / "failures.csv")
    assert len(failures) == 3 and failures[0]["Error"] == "RuntimeError: this method always fails"
    coco = _csv(out / "tables" / "coco.csv")
    assert {float(r["AP50"]) for r in coco if r["Model"] == "low (all)"} == {1.0}
    training = _csv(out / "tables" / "training.csv")
    assert [r["Total Epochs"] for r in training] == ["2"] * 4 and training[0]["Batch Size"] == "2"
    intervals = _csv(out / "tables" / "certainty_intervals_iou0.5.csv")
    assert intervals and all(float(r["F1 low"]) <= float(r["F1@50"]) <= float(r["F1 high"]) for r in intervals)
    assert list((out / "tables").glob("certainty_pairs-*.csv"))
    for name in ("metrics_0.png", "metrics_1.png", "qualitative_0.png", "training_curves.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    html = (out / "report.html").read_text()
    assert "src='data:image/png;base64," in html and "src='http" not in html and "href='http" not in html
    assert html.count("<table>") == len(list((out / "tables").glob("*.csv")))
    assert html.count("<table>") == html.count("class='caption'>") - html.count("<figcaption")
    assert "boundary rule: off" in html and "priority-last" in html


def test_report_refuses_non_runs_and_existing_output(run_dir, tmp_path):
    with pytest.raises(DataError, match="not a cellbench run folder"):
        write_report(tmp_path, tmp_path / "rep")
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "x").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        write_report(run_dir, tmp_path / "rep", qualitative_images=0)
    write_report(run_dir, tmp_path / "rep", qualitative_images=0, overwrite=True)
    assert not (tmp_path / "rep" / "x").exists()


def test_report_opens_with_the_leaderboard(run_dir, tmp_path):
    summary = write_report(run_dir, tmp_path / "rep", qualitative_images=0)
    out = tmp_path / "rep"
    html = (out / "report.html").read_text()
    first = html.index("<h2")
    assert html[first:].startswith(
        "<h2 id='s0'>Leaderboard: F1@0.5 across seeds</h2>\n<h3>F1@50 against the overlapping")
    # the leaderboard's table, then its figure, then the next section
    assert (html.index("leaderboard_f1_iou0.5.csv") < html.index("<figure>") < html.index("<h2 id='s1'>")
            < html.index("<h2 id='s2'>"))
    assert "Across seeds and across images</h2>" in html[html.index("<h2 id='s1'>"):html.index("<h2 id='s2'>")]
    assert "leaderboard.png" in summary.figures and (out / "figures" / "leaderboard.png").stat().st_size > 1000
    rows = {(r["Method"], r["Regime"]): r for r in _csv(out / "tables" / "leaderboard_f1_iou0.5.csv")}
    assert rows["low", "all"]["F1@50 mean"] == "1.0" and rows["low", "all"]["F1@50 sd"] == ""  # one seed
    assert rows["low", "all"]["Best in row"] == "yes" and rows["high", "zero-shot"]["Best in row"] == ""
    assert ("broken", "one") not in rows
    assert "<td><strong>1.000 ± –</strong></td>" in html
