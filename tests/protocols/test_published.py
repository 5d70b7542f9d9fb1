"""The papers' published values: the shipped files load, every value maps to exactly one protocol entry and a metric
the report computes, the transcriptions are consistent with themselves, and mistakes name the file and the row."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from cellbench.analysis import parse_metric
from cellbench.errors import DataError
from cellbench.protocols import (
    check_published,
    list_protocols,
    load_protocol,
    load_published,
    method_regimes,
    published_from_dict,
)
from cellbench.runner import load_experiment
from cellbench.runner.grid import expand_grid

PROTOCOLS = Path(__file__).parents[2] / "examples" / "protocols"
# protocol -> (values, of which read with doubt); counted by hand from the papers (see each file's header)
COUNTS = {"glioma_c6": (2 * 26 * 6 + 8 * 6, 2), "cellseg1": (7, 3), "cellseg_18_methods": (4, 0),
          "neurips22_report": (3 * 17, 0)}


@pytest.fixture(scope="module")
def loaded():
    return {p.name: load_protocol(p.name, search=PROTOCOLS) for p in list_protocols(PROTOCOLS)}


def test_every_protocol_has_its_published_values(loaded):
    assert sorted(loaded) == sorted(COUNTS)
    for name, lp in loaded.items():
        assert lp.published is not None and lp.published.protocol == name, name
        values = lp.published.values
        assert (len(values), sum(not v.certain for v in values)) == COUNTS[name], name
        assert all(v.note for v in values if not v.certain), "a doubtful value says why"
        assert lp.published.paper in lp.protocol.path.read_text(), "the protocol names the paper its numbers are from"


def test_every_value_maps_to_exactly_one_entry_and_metric(loaded):
    """Each measured value: one grid entry group (dataset, task, method, regime) of the protocol testing its split,
    scored against its ground truth, and a metric the protocol's evaluation computes."""
    for name, lp in loaded.items():
        exp = lp.experiment
        grid = [g for g in expand_grid(exp) if g.seed == exp.seeds[0]]
        for v in lp.published.values:
            e = v.entry
            spec = parse_metric(v.metric)  # a name the report computes
            if not v.measured:
                assert v.why and e.ground_truth == "expert-consensus", (name, v.row)
                continue
            if e.method in exp.skipped:  # an extra not installed here (yolo): its regimes come from the file
                assert e.regime in (method_regimes(lp.protocol.path)[e.method] or ()), (name, v.row)
                continue
            matches = [g for g in grid if (g.dataset.name, g.task, g.method.name, g.regime.name)
                       == (e.dataset, e.task, e.method, e.regime) and any(t.split == e.split for t in g.tests)]
            assert len(matches) == 1, (name, v.row, v.metric, len(matches))
            assert e.ground_truth in exp.evaluation.ground_truth
            assert spec.threshold is None or spec.threshold in exp.evaluation.thresholds
            assert spec.kind != "coco" or exp.evaluation.coco


def test_glioma_tables_agree_with_themselves(loaded):
    """Tables 2 and 4 pool TP / FP / FN: F1 = 2PR / (P + R) and AP@50 = F1 / (2 - F1) within the printed rounding;
    the one row that breaks the first is the one marked uncertain."""
    values = loaded["glioma_c6"].published.values
    rows: dict[tuple, dict] = {}
    for v in values:
        if v.source.startswith(("Table 2", "Table 4")):
            rows.setdefault((v.source, v.row), {})[v.metric] = v
    assert len(rows) == 2 * 26
    broken = []
    for (source, row), m in rows.items():
        p, r, f1, ap = (m[k].value for k in ("precision@0.5", "recall@0.5", "f1@0.5", "ap_dsb@0.5"))
        step = 0.01 if source == "Table 2" else 0.1
        if abs(2 * p * r / (p + r) - f1) > 1.2 * step:
            broken.append(row)
        assert abs(100 * f1 / (200 - f1) - ap) <= 1.2 * step, (source, row)
    assert broken == ["Cells, gen: MediarFormer, Glioma-ft yes"]
    doubtful = {(v.source, v.row, v.metric) for v in values if not v.certain}
    assert doubtful == {("Table 2", broken[0], "precision@0.5"), ("Table 2", broken[0], "recall@0.5")}


def test_spec_reference_numbers_are_in_the_file(loaded):
    """SPEC.md's reference numbers (fine-tuned, cells, spec) are Table 2's."""
    got = {(v.entry.method, v.entry.task, v.metric): v.value for v in loaded["glioma_c6"].published.values
           if v.source == "Table 2" and v.entry.split == "test" and v.entry.regime == "fine-tuned"}
    assert got[("cellpose", "cells", "f1@0.5")] == 83.57 and got[("cellpose", "cells", "ap_dsb@0.75")] == 26.31
    assert got[("mediar", "cells", "ap_dsb@0.5")] == 70.39 and got[("cellseg1", "cells", "f1@0.5")] == 79.4
    assert got[("yolo", "cells", "ap_dsb@0.5")] == 58.7 and got[("cellpose", "soma", "f1@0.5")] == 87.63


RAW = {
    "paper": "p", "protocol": "x",
    "tables": [{"source": "Table 9", "unit": "percent", "entry": {"dataset": "d", "task": "all", "split": "test"},
                "columns": ["f1@0.5", "ap_dsb@0.75"],
                "rows": [{"row": "M, tuned", "entry": {"method": "m", "regime": "all"}, "values": [80.0, None],
                          "uncertain": {"f1@0.5": "smudged"}}]}],
}


def test_loader_expands_rows_into_values():
    s = published_from_dict(RAW, source="x.published.yaml")
    f1, ap = s.values
    assert (f1.metric, f1.value, f1.fraction, f1.certain, f1.note) == ("f1@0.5", 80.0, 0.8, False, "smudged")
    assert (ap.value, ap.fraction, ap.certain) == (None, None, True)
    assert f1.entry.label() == "d/all/m/all, split test, ground truth overlap"
    assert type(s).from_dict(s.to_dict()) == s


@pytest.mark.parametrize("change, message", [
    (lambda r: r["tables"][0].update(columns=["f1@0.5", "ap@0.5"]), r"columns\[1\]: unknown metric 'ap@0.5'"),
    (lambda r: r["tables"][0]["rows"][0].update(values=[80.0]), r"rows\[0\] \(M, tuned\)\.values: needs 2 values"),
    (lambda r: r["tables"][0]["rows"][0].update(values=[180.0, 1.0]), r"180.0 is outside 0 .. 100 \(percent\)"),
    (lambda r: r["tables"][0]["rows"][0].update(colour="red"), r"unknown key\(s\) \['colour'\]"),
    (lambda r: r["tables"][0]["rows"][0]["entry"].pop("regime"), r"a measured value needs \['regime'\]"),
    (lambda r: r["tables"][0]["rows"][0].update(notes={"recall@0.5": "x"}), r"notes: unknown key\(s\) \['recall@0.5'\]"),
    (lambda r: r["tables"][0]["rows"].append(copy.deepcopy(r["tables"][0]["rows"][0])), "is published twice"),
    (lambda r: r["tables"][0]["entry"].update(ground_truth="expert-consensus"), "mark the table `measured: false`"),
    (lambda r: r["tables"][0].update(statistic="mode"), "statistic: must be one of"),
])
def test_loader_names_the_file_and_row(change, message):
    raw = copy.deepcopy(RAW)
    change(raw)
    with pytest.raises(DataError, match=message) as info:
        published_from_dict(raw, source="x.published.yaml")
    assert "x.published.yaml" in str(info.value) and "Table 9" in str(info.value)


def test_check_against_the_protocol(tmp_path):
    proto = tmp_path / "x.yaml"
    proto.write_text(yaml.safe_dump({
        "name": "x", "datasets": {"d": {"layout": "dsb", "path": str(tmp_path), "train": "train", "test": ["test"]}},
        "methods": {"m": {"method": "watershed"}}, "regimes": {"all": {"train_images": "all"}},
        "evaluation": {"thresholds": [0.5, 0.75]}}))
    exp = load_experiment(proto)
    check_published(published_from_dict(RAW), exp)
    for path, value, message in [
        (("entry", "method"), "n", "has no method 'n'"), (("entry", "regime"), "one", "runs regimes \\['all'\\], not 'one'"),
        (("entry", "split"), "gen", "on splits \\['test'\\], not 'gen'")]:
        raw = copy.deepcopy(RAW)
        raw["tables"][0]["rows"][0][path[0]][path[1]] = value
        with pytest.raises(DataError, match=message):
            check_published(published_from_dict(raw, source="x.published.yaml"), exp)
    raw = copy.deepcopy(RAW)
    raw["tables"][0]["columns"] = ["f1@0.9", "coco_map"]
    raw["tables"][0]["rows"][0].pop("uncertain")
    with pytest.raises(DataError, match="IoU 0.9 is not among the protocol's thresholds"):
        check_published(published_from_dict(raw), exp)
    raw["tables"][0]["columns"] = ["f1@0.75", "coco_map"]
    with pytest.raises(DataError, match="needs `coco: true`"):
        check_published(published_from_dict(raw), exp)


def test_load_published_reports_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="cannot read published values"):
        load_published(tmp_path / "none.published.yaml")
    bad = tmp_path / "bad.published.yaml"
    bad.write_text("paper: [")
    with pytest.raises(DataError, match="not valid YAML"):
        load_published(bad)
