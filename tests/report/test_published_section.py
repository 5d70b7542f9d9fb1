"""'Published vs this run' on a hand-made run: each published value meets its own entry's evaluations (method,
regime, split, ground truth), statuses and budget marks are right, and the section's tables and figure are made."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cellbench.analysis import metric_value
from cellbench.protocols import BudgetChange, RunProvenance, published_from_dict, write_provenance
from cellbench.report.published_section import PUBLISHED_SECTION, published_rows, published_section, published_tables
from cellbench.report.results import EntryEvaluation, RunResults
from cellbench.runner import EntryRecord, EvaluationRecord

PUBLISHED = {
    "paper": "paper_x", "protocol": "x",
    "tables": [
        {"source": "Table 2", "unit": "percent", "entry": {"dataset": "g", "task": "cells", "ground_truth": "overlap"},
         "columns": ["f1@0.5", "ap_dsb@0.5"],
         "rows": [{"row": "A tuned, spec", "entry": {"method": "a", "regime": "tuned", "split": "test"},
                   "values": [80.0, 66.67]},
                  {"row": "A tuned, gen", "entry": {"method": "a", "regime": "tuned", "split": "gen"},
                   "values": [60.0, None], "uncertain": {"f1@0.5": "smudged"}},
                  {"row": "B as is, spec", "entry": {"method": "b", "regime": "zero-shot", "split": "test"},
                   "values": [20.0, 11.1]},
                  {"row": "C tuned, spec", "entry": {"method": "c", "regime": "tuned", "split": "test"},
                   "values": [70.0, 53.8]},
                  {"row": "D tuned, spec", "entry": {"method": "d", "regime": "tuned", "split": "test"},
                   "values": [70.0, 53.8]}]},
        {"source": "Table 4", "unit": "fraction", "entry": {"dataset": "g", "task": "cells", "ground_truth": "flattened"},
         "columns": ["mean_f1@0.5"],
         "rows": [{"row": "A tuned, spec", "entry": {"method": "a", "regime": "tuned", "split": "test"}, "values": [0.7]}]},
        {"source": "Table 3", "unit": "fraction", "measured": False, "why": "the experts' annotations are not public",
         "entry": {"dataset": "g", "task": "cells", "split": "test", "ground_truth": "expert-consensus"},
         "columns": [{"metric": "ap_dsb@0.5", "entry": {"image": "image 1"}}],
         "rows": [{"row": "Dataset annotation", "values": [0.71]}]},
    ],
    "figures": [{"source": "Figure 2", "what": "shapes"}],
}


def _per_image(tp: int, fp: int, fn: int, n: int = 4) -> list[dict]:
    return [{"image": f"i{k}", "n_gt": tp + fn, "by_iou": {"0.5": {"tp": tp, "fp": fp, "fn": fn,
                                                                   "f1": 2 * tp / (2 * tp + fp + fn)}}}
            for k in range(n)]


def _ev(method, regime, seed, split, gt, counts, *, status="done") -> EntryEvaluation:
    entry = EntryRecord(key=f"{method}{regime}{seed}", label=f"g/cells/{method}/{regime}/seed{seed}", dataset="g",
                        task="cells", method=method, method_impl="watershed", regime=regime, train_images=None,
                        seed=seed, status=status, error=None if status == "done" else "boom", config={})
    return EntryEvaluation(entry, EvaluationRecord(split=split, ground_truth=gt, flatten_policy=None, boundary_px=2,
                                                   thresholds=(0.5,), n_images=4, predict_wall_s=1.0,
                                                   result={"per_image": _per_image(*counts)}))


@pytest.fixture
def run(tmp_path) -> RunResults:
    evs = [_ev("a", "tuned", s, "test", "overlap", (8 + s, 2, 2)) for s in (0, 1)]
    evs += [_ev("a", "tuned", s, "gen", "overlap", (3, 3, 3)) for s in (0, 1)]
    evs += [_ev("a", "tuned", s, "test", "flattened", (5, 5, 0)) for s in (0, 1)]
    evs += [_ev("b", "zero-shot", 0, "test", "overlap", (1, 9, 9))]
    failed = EntryRecord(key="c", label="g/cells/c/tuned/seed0", dataset="g", task="cells", method="c",
                         method_impl="watershed", regime="tuned", train_images=None, seed=0, status="failed",
                         error="boom", config={})
    experiment = {"regimes": [{"name": "tuned", "train_images": None}, {"name": "zero-shot", "train_images": 0}],
                  "methods": [{"name": m, "method": "fake_methods:ThresholdMethod"} for m in "abcd"]}
    return RunResults(run_dir=tmp_path, name="x", experiment=experiment,
                      entries=tuple(e.entry for e in evs) + (failed,), evaluations=tuple(evs), invocations=())


def _provenance(changes=()):
    return RunProvenance("x", None, "cpu" if changes else "paper", tuple(changes),
                         published_from_dict(PUBLISHED, source="x.published.yaml"))


def test_each_value_meets_its_own_entry(run):
    rows = published_rows(run, _provenance(), n_boot=200)
    got = {(r.value.source, r.value.row, r.value.metric): r for r in rows}
    assert len(rows) == 12
    spec = got[("Table 2", "A tuned, spec", "f1@0.5")]
    expected = [metric_value({"per_image": _per_image(8 + s, 2, 2)}, "f1@0.5") for s in (0, 1)]
    assert spec.status == "compared" and spec.comparison.seeds == (0, 1)
    assert spec.comparison.seed_values == pytest.approx(expected)
    assert spec.comparison.measured == pytest.approx(sum(expected) / 2)
    gen = got[("Table 2", "A tuned, gen", "f1@0.5")]
    assert gen.comparison.measured == pytest.approx(0.5) and gen.value.certain is False  # the gen split's counts
    flat = got[("Table 4", "A tuned, spec", "mean_f1@0.5")]
    assert flat.comparison.measured == pytest.approx(10 / 15)  # the flattened evaluation, per image
    b = got[("Table 2", "B as is, spec", "ap_dsb@0.5")]
    assert b.comparison.measured == pytest.approx(1 / 19) and b.comparison.seeds == (0,)
    assert got[("Table 2", "C tuned, spec", "f1@0.5")].status == "failed"
    assert got[("Table 2", "D tuned, spec", "f1@0.5")].status == "not run"
    assert got[("Table 3", "Dataset annotation", "ap_dsb@0.5")].status == "not measurable"


def test_tables_show_the_pairs_and_the_budget(run):
    changes = (BudgetChange("seeds", "", "seeds", [0, 1, 2], [0], "the first seed only"),
               BudgetChange("method", "a", "config.n_epochs", 500, 80, "a's cpu preset"),
               BudgetChange("dataset", "g", "options.first_images", None, 4, "cut"),
               BudgetChange("regime", "tuned", "train_images", "all", "all of the first 4", "cut"))
    provenance = _provenance(changes)
    tables = published_tables(published_rows(run, provenance, n_boot=200), provenance)
    assert [t.title for t in tables] == ["paper_x, Table 2: published vs this run",
                                         "paper_x, Table 4: published vs this run",
                                         "paper_x, Table 3: published vs this run"]
    t2 = tables[0]
    shown = {(r[0], r[1]): r for r in t2.formatted()}
    row, metric, published, measured, diff, inside, budget, note = shown[("A tuned, spec", "f1@0.5")]
    assert published == "80" and measured.startswith("80.91 [") and diff == "+0.91"
    assert budget == "seeds, schedule, images"
    assert shown[("A tuned, gen", "f1@0.5")][2] == "60 ?" and "UNCERTAIN: smudged" in shown[("A tuned, gen", "f1@0.5")][7]
    assert shown[("B as is, spec", "f1@0.5")][6] == "images"  # zero-shot: one seed anyway, no schedule
    assert shown[("C tuned, spec", "f1@0.5")][3] == "n/a" and shown[("C tuned, spec", "f1@0.5")][7] == "failed"
    assert "Budget cpu: 4 change(s)" in t2.caption and "config.n_epochs 500 -> 80" in t2.caption
    records = list(csv.DictReader(io.StringIO(t2.to_csv().split("\n", 1)[1])))
    a = next(r for r in records if r["Row"] == "A tuned, spec" and r["Metric"] == "f1@0.5")
    assert (a["Published"], a["Unit"], a["Split"], a["Ground truth"], a["Status"]) == ("80.0", "percent", "test",
                                                                                        "overlap", "compared")
    assert float(a["Low"]) <= float(a["This run"]) <= float(a["High"])
    t3 = tables[2].formatted()[0]
    assert t3[1] == "ap_dsb@0.5 (image 1)" and "not measurable by a run: the experts'" in t3[7]


def test_section_reads_the_run_folder(run, tmp_path):
    assert published_section(run, tmp_path / "figures") is None  # no protocol.json, no experiment file
    write_provenance(tmp_path, _provenance())
    section = published_section(run, tmp_path / "figures", n_boot=100)
    assert section.title == PUBLISHED_SECTION and len(section.tables) == 3
    assert "12 published values, 7 compared with this run, 2 not run here, 2 failed, 1 not measurable" in section.text and "Figure 2 (shapes)" in section.text
    assert "Budget paper: the protocol as written" in section.text
    (caption, figure), = section.figures
    assert Path(figure).is_file() and "inside this run's interval" in caption
