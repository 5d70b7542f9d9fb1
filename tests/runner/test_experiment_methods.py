"""Experiment files: relative paths (always relative to the file), method presets, tiling and
settings per dataset, down to the grid entries that run them."""

from __future__ import annotations

import os

import pytest
import yaml
from runner_helpers import experiment_dict

from cellbench.errors import DataError
from cellbench.runner import expand_grid, load_experiment


def _write(folder, d):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _two_datasets(tiny_data) -> dict:
    d = experiment_dict(tiny_data)
    d["datasets"]["other"] = dict(d["datasets"]["tiny"])
    d["methods"] = {"ws": {"method": "watershed", "regimes": ["zero-shot"], "config": {"sigmas": [1.0]}}}
    return d


@pytest.mark.parametrize("cwd", ["file_folder", "parent", "elsewhere"])
def test_a_relative_path_means_relative_to_the_file_from_any_folder(tmp_path, tiny_data, monkeypatch, cwd):
    d = experiment_dict(tiny_data)
    d["datasets"]["tiny"]["path"] = "../data/tiny"
    path = _write(tmp_path / "exps", d)
    folder = {"file_folder": tmp_path / "exps", "parent": tmp_path, "elsewhere": tmp_path / "x" / "y"}[cwd]
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)
    exp = load_experiment(os.path.relpath(path, folder))
    assert exp.datasets[0].path == str(tmp_path / "data" / "tiny")  # absolute, whatever the working folder


def test_home_and_variables_expand_in_dataset_paths(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CB_DATA", str(tmp_path / "store"))
    d = experiment_dict(tiny_data)
    d["datasets"]["tiny"]["path"] = "~/data"
    d["datasets"]["two"] = {**d["datasets"]["tiny"], "path": "${CB_DATA}/two"}
    exp = load_experiment(_write(tmp_path, d))
    assert [ds.path for ds in exp.datasets] == [str(tmp_path / "home" / "data"), str(tmp_path / "store" / "two")]


def test_per_dataset_settings_reach_only_their_dataset(tmp_path, tiny_data):
    d = _two_datasets(tiny_data)
    d["methods"]["ws"]["per_dataset"] = {"other": {"sigmas": [2.0], "preprocess": {"low": 1.0},
                                                   "tiling": {"tile": 64, "overlap": 16}}}
    d["methods"]["ws"]["config"]["preprocess"] = {"high": 99.0}
    exp = load_experiment(_write(tmp_path, d))
    entries = {c.dataset.name: c for c in expand_grid(exp)}
    assert entries["tiny"].method.config == {"sigmas": [1.0], "preprocess": {"high": 99.0}}
    assert entries["tiny"].method.tiling is None
    # merged key by key, nested mappings too; tiling over the method's default (whole images for watershed)
    assert entries["other"].method.config == {"sigmas": [2.0], "preprocess": {"high": 99.0, "low": 1.0}}
    assert entries["other"].method.tiling == {"tile": 64, "overlap": 16}
    assert entries["tiny"].key != entries["other"].key or entries["tiny"].dataset != entries["other"].dataset


def test_per_dataset_settings_are_checked_on_load(tmp_path, tiny_data):
    d = _two_datasets(tiny_data)
    d["methods"]["ws"]["per_dataset"] = {"other": {"sigmaz": [2.0]}}
    with pytest.raises(DataError, match=r"methods\.ws\.per_dataset\.other: unknown WatershedConfig field\(s\) \['sigmaz'\]"):
        load_experiment(_write(tmp_path, d))
    d["methods"]["ws"]["per_dataset"] = {"nowhere": {"sigmas": [2.0]}}
    with pytest.raises(DataError, match=r"per_dataset: no dataset named 'nowhere'"):
        load_experiment(_write(tmp_path, d))


def test_a_preset_is_the_base_of_the_config(tmp_path, tiny_data):
    pytest.importorskip("torch")
    d = _two_datasets(tiny_data)
    d["methods"] = {"cs1": {"method": "cellseg1", "preset": "cpu", "regimes": ["zero-shot"],
                            "config": {"train": {"epochs": 2}}}}
    exp = load_experiment(_write(tmp_path, d))
    config = exp.methods[0].config
    assert config["train"] == {"patch_size": 128, "epochs": 2, "batch_size": 1, "grad_accum": 4}
    assert config["input_size"] == 128 and exp.methods[0].preset == "cpu"
    d["methods"]["cs1"]["preset"] = "gpu"
    with pytest.raises(DataError, match=r"methods\.cs1\.preset: cellseg1 has no preset 'gpu'; presets: \['cpu'\]"):
        load_experiment(_write(tmp_path, d))


def test_tiling_is_checked_and_takes_the_methods_default(tmp_path, tiny_data):
    d = _two_datasets(tiny_data)
    d["methods"]["ws"]["tiling"] = {"tile": 64, "overlap": 64}
    with pytest.raises(DataError, match=r"methods\.ws\.tiling: .*overlap \(64\) must be smaller than tile \(64\)"):
        load_experiment(_write(tmp_path, d))
    d["methods"]["ws"]["tiling"] = {"tile": 128, "overlap": 16, "stride": 3}
    with pytest.raises(DataError, match=r"methods\.ws\.tiling: unknown key\(s\) \['stride'\]"):
        load_experiment(_write(tmp_path, d))
    d["methods"]["ws"]["config"]["tiling"] = {"tile": 96}  # as in a `cellbench train --config` file
    del d["methods"]["ws"]["tiling"]
    exp = load_experiment(_write(tmp_path, d))
    assert exp.methods[0].tiling == {"tile": 96, "overlap": 24} and "tiling" not in exp.methods[0].config


def test_a_config_file_is_read_relative_to_the_experiment_and_config_goes_over_it(tmp_path, tiny_data, monkeypatch):
    d = _two_datasets(tiny_data)
    (tmp_path / "exps" / "configs").mkdir(parents=True)
    (tmp_path / "exps" / "configs" / "ws.yaml").write_text(
        "sigmas: [3.0]\npreprocess: {low: 2.0}\ntiling: {tile: 96, overlap: 8}\n")
    d["methods"]["ws"]["config_file"] = "configs/ws.yaml"
    d["methods"]["ws"]["config"] = {"preprocess": {"high": 98.0}}
    path = _write(tmp_path / "exps", d)
    monkeypatch.chdir(tmp_path)
    (ws,) = load_experiment(path).methods
    assert ws.config == {"sigmas": [3.0], "preprocess": {"low": 2.0, "high": 98.0}}
    assert ws.tiling == {"tile": 96, "overlap": 8}
    d["methods"]["ws"]["config_file"] = "configs/missing.yaml"
    with pytest.raises(DataError, match="config file not found") as info:
        load_experiment(_write(tmp_path / "exps", d))
    assert "missing.yaml" in str(info.value)


def test_a_method_that_cannot_run_here_fails_on_load_unless_if_installed(tmp_path, tiny_data):
    d = _two_datasets(tiny_data)
    d["methods"]["absent"] = {"method": "fake_methods:NeedsAbsentPackage", "regimes": ["zero-shot"]}
    with pytest.raises(DataError, match=r"methods\.absent: .*needs no_such_package_cb.*if_installed: true"):
        load_experiment(_write(tmp_path, d))
    d["methods"]["absent"]["if_installed"] = True
    exp = load_experiment(_write(tmp_path, d))
    assert [m.name for m in exp.methods] == ["ws"]
    assert "no_such_package_cb" in exp.skipped["absent"]
    d["methods"] = {"absent": d["methods"]["absent"]}
    with pytest.raises(DataError, match="none of the methods can run here"):
        load_experiment(_write(tmp_path, d))


def test_sam_and_cellseg1_tiles_are_the_tiling_old_keys_and_presets_included(tmp_path, tiny_data):
    """A preset's tiling is the base of the experiment's; SAM's and CellSeg1's old config keys tile /
    tile_overlap (config, config file, per dataset) are read as the tiling; CellSeg1's default tile is the
    training patch of the config it runs with."""
    pytest.importorskip("segment_anything")
    d = _two_datasets(tiny_data)
    (tmp_path / "old.yaml").write_text("backbone: tiny\ntile: 96\n")
    d["methods"] = {
        "sam-cpu": {"method": "sam", "preset": "cpu", "regimes": ["zero-shot"], "tiling": {"tile": 200}},
        "sam-old": {"method": "sam", "config_file": "old.yaml", "regimes": ["zero-shot"],
                    "per_dataset": {"other": {"tile_overlap": 16}}},
        "cs1": {"method": "cellseg1", "regimes": ["zero-shot"], "config": {"train": {"patch_size": 128}},
                "tiling": {"overlap": 32}},
    }
    exp = load_experiment(_write(tmp_path, d))
    sam_cpu, sam_old, cs1 = exp.methods
    assert sam_cpu.tiling == {"tile": 200, "overlap": 64} and "tiling" not in sam_cpu.config
    assert sam_old.tiling == {"tile": 96, "overlap": 64} and sam_old.config == {"backbone": "tiny"}
    assert sam_old.per_dataset == {"other": {"tiling": {"tile": 256, "overlap": 16}}}
    assert cs1.tiling == {"tile": 128, "overlap": 32}
    d["methods"]["sam-old"]["config"] = {"tiling": {"tile": 64}}
    (tmp_path / "old.yaml").write_text("backbone: tiny\ntile: 96\ntiling: {tile: 64}\n")
    with pytest.raises(DataError, match=r"methods\.sam-old\.config_file: tile and tiling both given"):
        load_experiment(_write(tmp_path, d))
