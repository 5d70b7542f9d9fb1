"""The 18-methods paper's methods in cellbench: one table, README's and the report's, from one data file.

``paper_methods.yaml`` beside this module lists the paper's 18 methods (its
Figure 2a rows) with cellbench's name for each, its state (built, built
differently and how, unavailable and why) and its DSB2018 left -> right
F1@0.5 with training CPU seconds. The report of a run of the 18-methods
protocol (``examples/protocols/cellseg_18_methods.yaml``, experiment name
``cellseg-18-methods``) shows it; README shows the same rows (a test holds
them equal).

>>> rows = paper_methods()
>>> len(rows), rows[0]["paper"], sum(r["cellbench"] is None for r in rows)
(18, 'Cellpose', 1)
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from cellbench.report.html import Section
from cellbench.report.results import RunResults
from cellbench.report.tables import Table

__all__ = ["PROTOCOL_NAME", "paper_methods", "paper_methods_section", "paper_methods_table"]

#: The experiment name of the 18-methods protocol, whose report shows the table.
PROTOCOL_NAME = "cellseg-18-methods"
_DATA = Path(__file__).with_name("paper_methods.yaml")


@cache
def _rows() -> tuple[dict, ...]:
    return tuple(yaml.safe_load(_DATA.read_text())["methods"])


def paper_methods() -> list[dict]:
    """The rows: ``paper``, ``cellbench`` (None when unavailable), ``state``, ``dsb_f1``, ``train_cpu_s``."""
    return [dict(r) for r in _rows()]


def paper_methods_table() -> Table:
    rows = tuple((r["paper"], r["cellbench"] or "-", r["state"], r["dsb_f1"], r["train_cpu_s"])
                 for r in paper_methods())
    return Table(
        key="paper_methods",
        title="The 18-methods paper's methods in cellbench",
        columns=("Paper's method", "cellbench", "State", "DSB F1@0.5", "Train CPU s"),
        rows=rows,
        decimals=3,
        caption="DSB2018 image of the stardist wheel, trained on the left half, scored on the right (seed 0, each "
                "method's committed examples/configs/dsb/ config, CPU-sized, not the paper's settings; "
                "benchmarks/dsb_half_split.py).",
    )


def paper_methods_section(results: RunResults) -> Section | None:
    """The table, for a run of the 18-methods protocol; None for other runs."""
    if results.experiment.get("name") != PROTOCOL_NAME:
        return None
    return Section(
        "The 18-methods paper's methods in cellbench",
        text="Which of the paper's methods this run could run, under which cellbench name, and how each "
             "differs from the paper's (RF-Next is unavailable).",
        tables=(paper_methods_table(),),
    )
