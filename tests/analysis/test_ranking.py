"""The 18-methods ranking against a hand-computed example."""

from __future__ import annotations

import math

import pytest

from cellbench.analysis import (
    DEFAULT_USABILITY,
    load_usability,
    normal_scores,
    rank_models,
    ranking_rows,
    task_accuracy,
)
from cellbench.errors import DataError
from cellbench.methods import METHODS


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_hand_computed_example():
    # Three models, two tasks. Accuracies are plain fractions (not normalised), as in the paper.
    accuracy = {"A": {"t1": 0.8, "t2": 0.7}, "B": {"t1": 0.6, "t2": 0.5}, "C": {"t1": 0.4, "t2": None}}
    usability = {"A": {"code_maintenance": 9, "ease_of_use": 5, "hardware_support": 8},
                 "B": {"code_maintenance": 6, "ease_of_use": 5, "hardware_support": 8},
                 "C": {"code_maintenance": 3, "ease_of_use": 5, "hardware_support": 2}}
    ts = {"A": {"t1": 100.0, "t2": 300.0}, "B": {"t1": 200.0, "t2": 300.0}, "C": {"t1": 300.0}}
    r = rank_models(accuracy, usability=usability, running_time=ts)
    # By hand. code maintenance 9, 6, 3: mean 6, population sd sqrt(6) -> z = +-1.2247, 0.
    # ease of use all 5 -> z = 0 -> 0.5. hardware 8, 8, 2: mean 6, sd sqrt(8) -> z = 0.7071, 0.7071, -1.4142.
    z_cm = 3 / math.sqrt(6)
    z_hw = 2 / math.sqrt(8)
    u = {"A": (_phi(z_cm) + 0.5 + _phi(z_hw)) / 3, "B": (0.5 + 0.5 + _phi(z_hw)) / 3,
         "C": (_phi(-z_cm) + 0.5 + _phi(-2 * z_hw)) / 3}
    assert u["A"] == pytest.approx(0.71664, abs=1e-5)
    # Ts t1: 100, 200, 300 -> z = -1.2247, 0, 1.2247; t2: A and B only, equal -> 0.5 each; C has no t2.
    s = {"A": 1 - (_phi(-z_cm) + 0.5) / 2, "B": 1 - (0.5 + 0.5) / 2, "C": 1 - _phi(z_cm)}
    overall = {"A": (0.8 + 0.7 + u["A"] + s["A"]) / 4, "B": (0.6 + 0.5 + u["B"] + s["B"]) / 4,
               "C": (0.4 + u["C"] + s["C"]) / 3}  # C's t2 accuracy is missing: left out of the mean
    rows = {row.model: row for row in r.rows}
    for m in "ABC":
        assert rows[m].usability == pytest.approx(u[m], abs=1e-12)
        assert rows[m].scalability == pytest.approx(s[m], abs=1e-12)
        assert rows[m].overall == pytest.approx(overall[m], abs=1e-12)
    assert [row.model for row in r.rows] == ["A", "B", "C"] and [row.rank for row in r.rows] == [1, 2, 3]
    assert rows["C"].missing == ("accuracy t2",) and rows["A"].mean_accuracy == pytest.approx(0.75)
    assert round(rows["A"].overall, 4) == 0.7279  # (0.8 + 0.7 + 0.71664 + 0.69483) / 4
    tidy = ranking_rows(r)
    assert tidy[0]["model"] == "A" and tidy[2]["accuracy t2"] is None and "Ts normalised t1" in tidy[0]


def test_ties_share_a_rank_and_missing_components():
    r = rank_models({"a": {"t": 0.5}, "b": {"t": 0.5}, "c": {"t": None}})
    assert [(x.model, x.rank) for x in r.rows] == [("a", 1), ("b", 1), ("c", None)]
    assert r.rows[0].usability is None and "usability (no scores)" in r.rows[0].missing
    assert r.rows[0].scalability is None and r.rows[2].overall is None


def test_task_accuracy_and_normal_scores():
    assert task_accuracy({"map": 0.4, "ap50": 0.7, "ap75": 0.4, "ar50": 0.8, "ar75": 0.5}) == pytest.approx(0.56)
    assert task_accuracy({"map": 0.4}) is None and task_accuracy(None) is None
    assert normal_scores({"x": 3.0}) == {"x": 0.5}
    assert normal_scores({"x": None, "y": 1.0, "z": 1.0}) == {"x": None, "y": 0.5, "z": 0.5}


def test_default_usability_file_scores_every_cellbench_method(tmp_path):
    scores, source = load_usability()
    assert DEFAULT_USABILITY.is_file() and "18-methods" in source
    # the methods of cellbench when the file was written (a method without scores is ranked without usability)
    known = {"watershed", "cellpose", "cellseg1", "stardist", "unet", "maunet", "mediar", "nnunet", "maskrcnn"}
    assert known <= set(scores) and {"watershed", "cellpose", "cellseg1"} <= set(METHODS)
    assert all(1 <= v <= 10 for row in scores.values() for v in row.values())
    bad = tmp_path / "u.yaml"
    bad.write_text("methods:\n  m: {code_maintenance: 11, ease_of_use: 5, hardware_support: 5}\n")
    with pytest.raises(DataError, match="code_maintenance"):
        load_usability(bad)
    bad.write_text("- a list\n")
    with pytest.raises(DataError, match="methods"):
        load_usability(bad)
