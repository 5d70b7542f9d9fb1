"""The report's analysis sections on a tiny run (3 methods x 3 regimes x 2 seeds, zero-shot once), and
`cellbench analyze rank / regress` on it."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

from runner_helpers import experiment_dict, write_tiny_dsb  # noqa: E402

from cellbench.cli.main import main  # noqa: E402
from cellbench.report import write_report  # noqa: E402
from cellbench.report.morphology_section import agreement_tables  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis_report")
    data = write_tiny_dsb(tmp / "data")
    exp = experiment_dict(data, fail=True, coco=True)
    exp["seeds"] = [0, 1]
    exp["evaluation"]["ground_truth"] = ["overlap"]
    (tmp / "exp.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))
    assert main(["run", str(tmp / "exp.yaml"), "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "rep"
    (run_dir / "agreement.json").write_text(json.dumps({
        "iou_thresholds": [0.5], "images": ["a"], "consensus_rule": "majority",
        "pairs": [{"reference": "A", "other": "B", "kind": "annotation", "by_iou": {"0.5": {"ap_dsb": 0.75}}}],
        "vs_consensus": [{"reference": "consensus", "other": "A", "kind": "annotation",
                          "by_iou": {"0.5": {"ap_dsb": 1.0}}}]}))
    try:
        write_report(run_dir, out, qualitative_images=1)
    finally:
        (run_dir / "agreement.json").unlink()
    return out


def _csv(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    return list(csv.DictReader(lines[1:]))


def test_sections_are_in_the_report(report):
    html = (report / "report.html").read_text()
    for title in ("Error analysis", "Morphology: ground truth and predictions", "Annotation agreement",
                  "Ranking (18-methods paper scheme)", "Data efficiency"):
        assert f">{title}</h2>" in html, title
    assert html.count("<table>") == len(list((report / "tables").glob("*.csv")))
    for name in ("errors_0_0.png", "ranking.png", "efficiency_0.png", "morphology_0/morphology_scatter.png"):
        assert (report / "figures" / name).stat().st_size > 1000, name
    assert "Error analysis" in json.loads((report / "tables.json").read_text())


def test_error_tables(report):
    split_merge = {r["Model"]: r for r in _csv(report / "tables" / "errors_split_merge-tiny-all-test-overlap.csv")}
    # trained thresholds find all 7 disks of the 2 test images; `high` zero-shot finds only specks inside them
    assert split_merge["low (one)"]["TP"] == "7" and split_merge["low (one)"]["FP"] == "0"
    assert split_merge["high (zero-shot)"]["TP"] == "0" and split_merge["high (zero-shot)"]["FN"] == "7"
    # later seeds are named; zero-shot runs once (the seed cannot change an untrained model)
    assert "high (one, seed 1)" in split_merge and "high (zero-shot, seed 1)" not in split_merge
    area = [r for r in _csv(report / "tables" / "errors-area-tiny-all-test-overlap.csv") if r["Model"] == "low (all)"]
    assert [r["Recall"] for r in area if r["GT"] != "0"] == ["1.0"]  # every disk is 64-255 px
    assert sum(int(r["GT"]) for r in area) == 7


def test_ranking_efficiency_and_agreement_tables(report):
    ranking = _csv(report / "tables" / "ranking.csv")
    assert {r["Model"] for r in ranking} == {f"{m} ({g})" for m in ("low", "high") for g in ("zero-shot", "one", "all")}
    assert ranking[0]["Rank"] == "1" and float(ranking[0]["Overall"]) >= float(ranking[-1]["Overall"])
    eff = {(r["Method"], r["Regime"]): r for r in _csv(report / "tables" / "efficiency-tiny-all-test-overlap.csv")}
    assert eff[("low", "one")]["Draws"] == "2" and float(eff[("low", "all")]["Train images"]) == 3.0
    assert float(eff[("low", "all")]["Train cells"]) == 12.0  # 3 + 4 + 5 disks in the 3 training images
    assert float(eff[("low", "all")]["Mean"]) == 1.0
    agree = _csv(next((report / "tables").glob("agreement-*.csv")))
    assert agree[0]["Reference"] == "A" and float(agree[0]["AP@50"]) == 0.75


def test_agreement_tables_skip_other_json(tmp_path):
    (tmp_path / "agreement_x.json").write_text("{}")
    assert agreement_tables(tmp_path) == []


def test_rank_and_regress_commands(run_dir, tmp_path, capsys):
    scores = tmp_path / "u.yaml"
    scores.write_text("source: test\nmethods:\n"
                      "  low: {code_maintenance: 9, ease_of_use: 9, hardware_support: 9}\n"
                      "  high: {code_maintenance: 1, ease_of_use: 1, hardware_support: 1}\n")
    assert main(["analyze", "rank", str(run_dir), "--usability", str(scores), "--out", str(tmp_path / "rank")]) == 0
    d = json.loads((tmp_path / "rank" / "ranking.json").read_text())
    usab = {r["model"]: r["usability"] for r in d["rows"]}
    assert usab["low (one)"] == pytest.approx(0.8413447, abs=1e-6)  # z = +1 -> Phi(1)
    assert usab["high (all)"] == pytest.approx(1 - 0.8413447, abs=1e-6)
    assert (tmp_path / "rank" / "ranking.png").is_file()
    assert main(["analyze", "regress", str(run_dir), "--out", str(tmp_path / "reg")]) == 0
    out = capsys.readouterr().out
    assert "low: m ~ 1 + N" in out and "dropped S" in out
    fits = json.loads((tmp_path / "reg" / "regression.json").read_text())["fits"]
    assert {f["group"] for f in fits} == {"low", "high"} and all(f["n_obs"] == 1 + 2 + 2 for f in fits)
    assert main(["analyze", "rank", str(tmp_path), "--out", str(tmp_path / "r2")]) == 2


def test_coco_for_methods_without_scores_equals_stored_when_every_score_is_1(run_dir):
    import dataclasses

    from cellbench.report import load_results
    from cellbench.report.paper_sections import CocoSource

    results = load_results(run_dir)
    coco = CocoSource(results)
    ev = next(e for e in results.evaluations if e.entry.model == "low (one)")
    stored = ev.evaluation.result["coco"]
    bare = dataclasses.replace(ev, evaluation=dataclasses.replace(
        ev.evaluation, result={k: v for k, v in ev.evaluation.result.items() if k != "coco"}))
    recomputed = coco.summary(bare)  # the test method scores every instance 1: the same COCO numbers
    assert {k: recomputed[k] for k in ("map", "ap50", "ap75", "ar50", "ar75")} == \
        {k: stored[k] for k in ("map", "ap50", "ap75", "ar50", "ar75")}
    assert coco.uniform == {"low (one)"} and coco.summary(ev) is stored


def test_a_report_reads_each_cached_prediction_once(run_dir, tmp_path, monkeypatch):
    from cellbench.runner import PredictionCache

    calls = []
    read = PredictionCache.load_prediction

    def counted(self, split, image):
        calls.append((self.folder.name, split, image))
        return read(self, split, image)

    monkeypatch.setattr(PredictionCache, "load_prediction", counted)
    write_report(run_dir, tmp_path / "rep", qualitative_images=1)
    assert calls and len(calls) == len(set(calls))  # error analysis, morphology, COCO and panels share them


def test_ground_truth_is_read_once_per_setting_and_a_limit_takes_its_first_images(run_dir):
    import numpy as np

    from cellbench.report import load_results
    from cellbench.report.run_data import ground_truth, predictions

    results = load_results(run_dir)
    ev = results.evaluations[0]
    whole = ground_truth(results, ev)
    assert ground_truth(results, ev) is whole
    first, fresh = ground_truth(results, ev, limit=1), ground_truth(load_results(run_dir), ev, limit=1)
    assert first.names == fresh.names == whole.names[:1]
    for a, b in zip(first.gt, fresh.gt):
        assert [i.bbox for i in a] == [i.bbox for i in b]
        assert all(np.array_equal(i.mask, j.mask) for i, j in zip(a, b))
    preds = predictions(results, ev, whole.names)
    assert all(predictions(results, ev, whole.names)[n] is p for n, p in preds.items())
    raw = predictions(results, ev, whole.names, boundary_rule=False)
    assert all(len(raw[n]) >= len(p) for n, p in preds.items())
