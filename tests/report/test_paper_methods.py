"""The 18-methods paper's methods table: README shows the data file's rows, and the protocol's report shows them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from cellbench.methods import METHODS
from cellbench.methods.adapters.detection.backbones import BACKBONES
from cellbench.report.paper_methods import PROTOCOL_NAME, paper_methods, paper_methods_section

README = Path(__file__).parents[2] / "README.md"
HEADER = "| paper's method | cellbench | state | DSB F1@0.5 | train CPU s |"


def _readme_rows() -> list[list[str]]:
    text = README.read_text()
    block = text[text.index(HEADER):].split("\n\n")[0].splitlines()[2:]
    return [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in block]


def test_readme_shows_the_data_files_rows():
    expected = [[r["paper"], r["cellbench"] or "-", r["state"], "-" if r["dsb_f1"] is None else f"{r['dsb_f1']:.3f}",
                 "-" if r["train_cpu_s"] is None else str(r["train_cpu_s"])] for r in paper_methods()]
    shown = [[cell.replace("`", "") if k == 1 else cell for k, cell in enumerate(row)] for row in _readme_rows()]
    assert shown == expected


def test_every_named_method_and_backbone_exists():
    rows = paper_methods()
    assert len(rows) == 18 and len({r["paper"] for r in rows}) == 18
    for r in rows:
        if r["cellbench"] is None:
            assert r["state"].startswith("unavailable")
            continue
        method, _, rest = r["cellbench"].partition(", ")
        assert method in METHODS, r
        if rest.startswith("backbone: "):
            assert rest.split()[1] in BACKBONES, r


def test_the_protocols_report_shows_it_and_no_other():
    section = paper_methods_section(SimpleNamespace(experiment={"name": PROTOCOL_NAME}))
    assert section is not None and len(section.tables[0].rows) == 18
    assert paper_methods_section(SimpleNamespace(experiment={"name": "tiny"})) is None
    protocol = (Path(__file__).parents[2] / "examples" / "protocols" / "cellseg_18_methods.yaml").read_text()
    assert f"name: {PROTOCOL_NAME}\n" in protocol
