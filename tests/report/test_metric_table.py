"""The report's metric table: each family's paper name and matching convention, from the stored record or,
for evaluations stored before it, from the values they hold."""

from __future__ import annotations

from cellbench.metrics import METRICS, evaluate, metric_named
from cellbench.report.build import build_tables
from cellbench.report.metric_table import metric_families, metrics_table
from cellbench.report.results import EntryEvaluation
from cellbench.runner import EvaluationRecord

from ..metrics.helpers import dsb_pair
from .test_tables import _entry


def _ev(result, model="cellpose"):
    return EntryEvaluation(_entry(model), EvaluationRecord(
        split="test", ground_truth="overlap", flatten_policy=None, boundary_px=0, thresholds=(0.5,), n_images=1,
        predict_wall_s=1.0, result=result))


def test_conventions_of_the_metrics_scored():
    gt, pred = dsb_pair(0)
    with_aji = evaluate([gt], [pred], thresholds=[0.5], metrics=["aji", "pq_canonical"]).to_dict()
    default = evaluate([gt], [pred], thresholds=[0.5]).to_dict()
    t = metrics_table([_ev(with_aji), _ev(default, "unet")])
    rows = {r[0]: r for r in t.rows}
    assert list(rows) == ["matching", "aji", "pq_canonical", "dice"]
    assert rows["matching"][3] == metric_named("matching").convention and "IoU >= t" in rows["matching"][3]
    assert "IoU > 0.5" in rows["pq_canonical"][3] and "Kirillov" in rows["pq_canonical"][2]
    assert rows["aji"][1] == "aji" and rows["aji"][4].startswith("beside every IoU threshold, pooled")
    assert rows["matching"][5] == 2 and rows["aji"][5] == 1
    assert "pq_canonical at IoU > 0.5" in t.caption


def test_results_stored_before_the_record_are_named_by_their_values():
    old = {"image_mean": {"0.5": {"f1": 0.5, "dice": 0.7, "n_images": 2}}, "coco": {"map": 0.3}}
    assert list(metric_families(old)) == ["matching", "dice", "coco"]
    assert metric_families(old)["coco"]["convention"] == metric_named("coco").convention
    assert metrics_table([]) is None
    assert {m.name for m in METRICS} >= set(metric_families(old))


def test_the_report_has_the_section():
    gt, pred = dsb_pair(1)

    class _Results:
        evaluations = [_ev(evaluate([gt], [pred], thresholds=[0.5], metrics=["aji_plus"]).to_dict())]
        entries = [evaluations[0].entry]

    tables = build_tables(_Results())
    (table,) = tables["Metrics and matching conventions"]
    assert [r[0] for r in table.rows] == ["matching", "aji_plus"]
