"""`cellbench train --preset`, the cost notice on a CPU, and the committed DSB configs that
reproduce README's DSB rows through the CLI."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

import cellbench.cli.estimate as estimate
from cellbench.cli.demo import prepare_demo_data
from cellbench.cli.main import main
from cellbench.cli.methods import _cost_notice
from cellbench.methods import config_from_dict, get_method
from cellbench.methods.tiling import OLD_TILING_KEYS, method_tiling

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "examples" / "configs" / "dsb"


@pytest.fixture(scope="module")
def dsb(tmp_path_factory):
    """The demo's DSB2018 split: left half to train, right half to test (README's DSB table)."""
    root = tmp_path_factory.mktemp("demo-data")
    return Path(prepare_demo_data(root, glioma_images=1, glioma_shape=(64, 64))["dsb2018"]["path"])


def _readme_row(method: str) -> list[float]:
    """F1@0.5, F1@0.75, F1@0.9, AP@0.5 of README's DSB table, left -> right, for ``method``."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| left -> right |") and line.split("|")[2].strip().startswith(method):
            return [float(v) for v in line.strip("|").split("|")[-4:]]
    raise AssertionError(f"README has no DSB row for {method}")


def test_the_watershed_config_reproduces_readmes_dsb_row(dsb, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(estimate, "NOTICE_AFTER_S", 0.0)
    assert main(["train", "watershed", "--data", str(dsb), "--layout", "dsb", "--split", "train",
                 "--config", str(CONFIGS / "watershed.yaml"), "--out", "models/ws"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"training watershed on the CPU: after watershed tuning 1 of \d+, the whole training needs "
                     r"about (\d+ h )?\d+ (s|min) here\.\n", err), err  # how long depends on the machine's load
    assert "--preset cpu" not in err  # watershed needs no GPU, so it has no CPU preset to point to
    assert main(["predict", "models/ws", "--images", str(dsb / "test" / "images"), "--out", "preds"]) == 0
    assert main(["evaluate", "--gt", str(dsb / "test" / "masks"), "--pred", "preds/labels", "--json", "s.json"]) == 0
    pooled = __import__("json").loads((tmp_path / "s.json").read_text())["pooled"]
    found = [pooled["0.5"]["f1"], pooled["0.75"]["f1"], pooled["0.9"]["f1"], pooled["0.5"]["ap_dsb"]]
    assert [round(v, 3) for v in found] == _readme_row("watershed")


def test_the_cellpose_config_is_the_benchmarks():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import dsb_half_split
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    args = argparse.Namespace(cellpose_bsize=64, cellpose_epochs=150)
    assert yaml.safe_load((CONFIGS / "cellpose.yaml").read_text()) == dsb_half_split.METHOD_CONFIGS["cellpose"](args)


def test_the_cellseg1_config_is_its_cpu_preset_on_the_rows_threads():
    """The preset leaves the thread count to the machine; the README rows' config names the 2 they ran on."""
    cls = get_method("cellseg1")
    assert yaml.safe_load((CONFIGS / "cellseg1.yaml").read_text()) == cls.presets["cpu"] | {"threads": 2}


def test_every_dsb_config_loads_into_its_method():
    """<method>.yaml, or <method>_<variant>.yaml for a row of the same method with other settings."""
    for path in CONFIGS.glob("*.yaml"):
        cls = get_method(path.stem.split("_", 1)[0])
        values = yaml.safe_load(path.read_text()) or {}
        assert not set(OLD_TILING_KEYS) & set(values), f"{path.name}: the tiling goes in tiling: {{tile, overlap}}"
        tiling = values.pop("tiling", None)
        method_tiling(cls, tiling, config=config_from_dict(cls.Config, values, source=path), source=path)


def test_the_backbone_configs_differ_from_maskrcnns_by_the_backbone_alone():
    base = yaml.safe_load((CONFIGS / "maskrcnn.yaml").read_text())
    variants = sorted(CONFIGS.glob("maskrcnn_*.yaml"))
    assert len(variants) == 5
    for path in variants:
        values = yaml.safe_load(path.read_text())
        assert values == base | {"backbone": path.stem.removeprefix("maskrcnn_")}, path.name


def test_sams_old_tile_keys_and_its_preset_give_the_models_tiling(three_disks, tmp_path, caplog):
    """An old SAM config's tile / tile_overlap become model.json's tiling (with a warning), as the cpu
    preset's tiling does; SAM's own tiles are the model's, nothing is tiled around them."""
    pytest.importorskip("segment_anything")
    grid = "inference: {points_per_side: 2, points_batch: 4}\n"
    (tmp_path / "old.yaml").write_text("backbone: tiny\ntile: 40\ntile_overlap: 8\n" + grid)
    (tmp_path / "cpu.yaml").write_text("backbone: tiny\ninput_size: 64\n" + grid)
    for name, extra, tiling in (("old", [], {"tile": 40, "overlap": 8}),
                                ("cpu", ["--preset", "cpu"], {"tile": 128, "overlap": 64})):
        assert main(["train", "sam", "--data", str(three_disks), "--layout", "dsb", "--config",
                     str(tmp_path / f"{name}.yaml"), *extra, "--out", str(tmp_path / name)]) == 0
        record = json.loads((tmp_path / name / "model.json").read_text())
        assert record["tiling"] == tiling and "tile" not in record["config"]
    assert "old.yaml: sam settings tile and tile_overlap are the model's tiling now: read as tiling: " \
           "{'tile': 40, 'overlap': 8}" in caplog.text  # a warning: the CLI shows it on stderr


def test_preset_with_a_config_file_over_it(tmp_path, dsb, capsys):
    cfg = tmp_path / "over.yaml"
    cfg.write_text("train: {epochs: 1, min_patches: 1}\ninference: {points_per_side: 4}\n")
    cls = get_method("cellseg1")
    from cellbench.cli.methods import _config_values

    values = _config_values(cls, argparse.Namespace(config=str(cfg), preset="cpu"))
    config = config_from_dict(cls.Config, values)
    assert config.train.epochs == 1 and config.train.patch_size == 128 and config.inference.points_per_side == 4
    assert config.input_size == 128  # from the preset


def test_an_unknown_preset_is_refused(dsb, tmp_path, capsys):
    rc = main(["train", "watershed", "--data", str(dsb), "--layout", "dsb", "--split", "train", "--preset", "cpu",
               "--out", str(tmp_path / "m")])
    assert rc == 2
    assert "method 'watershed' has no preset 'cpu'; presets: none" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_the_cpu_notice_points_to_the_preset(capsys):
    cls = get_method("cellseg1")
    _cost_notice(cls, argparse.Namespace(preset=None))(3 * 3600 + 600, "cellseg1 epochs 1 of 300")
    err = capsys.readouterr().err
    assert err.startswith("cellbench: training cellseg1 on the CPU: after cellseg1 epochs 1 of 300, the whole "
                          "training needs about 3 h 10 min here.")
    assert "`--preset cpu`" in err
    _cost_notice(cls, argparse.Namespace(preset="cpu"))(600, "cellseg1 epochs 1 of 8")
    assert "--preset" not in capsys.readouterr().err
