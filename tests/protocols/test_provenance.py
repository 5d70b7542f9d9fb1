"""A run's protocol record: written and read back whole, another protocol or budget refused, and the published
values found beside the experiment file of a run made with `cellbench run`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cellbench.errors import DataError
from cellbench.protocols import (
    BudgetChange,
    RunProvenance,
    load_published,
    read_provenance,
    run_published,
    write_provenance,
)

CHECKOUT = Path(__file__).parents[2] / "examples" / "protocols"


def test_round_trip_and_refusal(tmp_path):
    published = load_published(CHECKOUT / "cellseg1.published.yaml")
    change = BudgetChange("seeds", "", "seeds", [0, 1], [0], "the first seed only")
    record = RunProvenance("cellseg1", str(CHECKOUT / "cellseg1.yaml"), "cpu", (change,), published)
    assert read_provenance(tmp_path) is None
    write_provenance(tmp_path, record)
    assert read_provenance(tmp_path) == record
    assert run_published(tmp_path, None) == record
    with pytest.raises(DataError, match="made from protocol cellseg1 with budget cpu, not cellseg1 with budget paper"):
        write_provenance(tmp_path, RunProvenance("cellseg1", None, "paper", (), published))
    (tmp_path / "protocol.json").write_text("{")
    with pytest.raises(DataError, match="cannot read the run's protocol record"):
        read_provenance(tmp_path)


def test_published_values_beside_the_experiment_file(tmp_path):
    for name in ("neurips22_report.yaml", "neurips22_report.published.yaml"):
        shutil.copy(CHECKOUT / name, tmp_path / name)
    found = run_published(tmp_path / "run", str(tmp_path / "neurips22_report.yaml"))
    assert (found.protocol, found.budget, found.changes) == ("neurips22_report", None, ())
    assert len(found.published.values) == 51
    (tmp_path / "neurips22_report.published.yaml").unlink()
    assert run_published(tmp_path / "run", str(tmp_path / "neurips22_report.yaml")) is None
    assert run_published(tmp_path / "run", None) is None
