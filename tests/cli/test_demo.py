"""``cellbench demo``: the end-to-end run (slow) and its refusal to clobber a foreign folder (fast)."""

from __future__ import annotations

import json

import pytest

from cellbench.cli.demo import run_demo
from cellbench.cli.main import main
from cellbench.errors import DataError


@pytest.mark.slow
def test_run_demo(tmp_path):
    out = tmp_path / "demo"
    messages = []
    result = run_demo(out, n_images=1, log=messages.append)
    real = result["real_dsb2018"]
    assert real["summary"]["n_instances"] == 125
    assert real["summary"]["n_images"] == 1
    assert real["summary"]["n_overlapping_instances"] == 0
    assert real["coco_round_trip_exact"] is True
    assert real["outline_area_difference_px"] == 0
    synth = result["synthetic_glioma_c6"]
    assert synth["summary"]["n_images"] == 1
    assert synth["summary"]["n_instances"] > 0
    # one synthetic image is a train split only: the flatten comparison falls back to it
    assert synth["flatten_split"] == "train"
    flat = synth["flatten_cells"]
    assert set(flat) == {"priority-first", "priority-last", "nearest-centroid"}
    assert len({p["instances"] for p in flat.values()}) == 1
    assert flat["priority-first"]["instances"] > 0
    assert set(synth["tasks"]) == {"cells", "soma", "type-a", "type-b"}
    on_disk = json.loads((out / "demo-summary.json").read_text())
    assert on_disk["real_dsb2018"]["summary"]["n_instances"] == 125
    assert on_disk["real_dsb2018"]["coco_round_trip_exact"] is True
    for name in ("dsb2018-labels", "dsb2018-coco", "dsb2018-roi", "dsb2018-geojson", "glioma-c6-synth",
                 "glioma-c6-train-cells-labels", "dsb2018-overlay.png", "glioma-synth-overlay.png"):
        assert (out / name).exists(), name
    assert any("125 nuclei" in m for m in messages)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging folder left


def test_demo_refuses_a_foreign_folder(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(DataError, match="other than a cellbench demo"):
        run_demo(out, n_images=1, log=lambda m: None)
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
