"""Model directories: self-describing, written all or nothing, bad ones refused with the file named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cellbench.errors import DataError
from cellbench.methods.base import EpochRecord, TrainHistory
from cellbench.methods.model_dir import FORMAT_VERSION, load_model, save_model, train_summary
from cellbench.methods.tiling import TileConfig
from cellbench.methods.adapters.watershed import WatershedConfig, WatershedMethod, WatershedParams


@pytest.fixture
def model(tmp_path, blobs) -> Path:
    method = WatershedMethod(WatershedConfig())
    method.params = WatershedParams(sigma=1.0, min_distance=4, min_size=10)
    history = TrainHistory(epochs=(EpochRecord(0, 0.2, 0.8),), val_metric="f1@0.5", best_epoch=0, wall_s=1.0)
    save_model(method, tmp_path / "m", train_summary=train_summary(blobs["train"], source={"layout": "dsb"}),
               seed=7, history=history, tiling=TileConfig(tile=256, overlap=64))
    return tmp_path / "m"


def edit(model: Path, **changes) -> None:
    path = model / "model.json"
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def test_model_json_describes_everything(model):
    record = json.loads((model / "model.json").read_text())
    assert record["format"] == "cellbench-model" and record["format_version"] == FORMAT_VERSION
    assert record["method"] == "watershed" and record["method_version"] == "1"
    assert record["config"]["preprocess"] == {"normalize": "percentile", "low": 0.1, "high": 99.9, "clahe": False,
                                              "clahe_clip": 0.01, "clahe_kernel": None}
    assert record["tiling"] == {"tile": 256, "overlap": 64}
    assert record["flatten"]["policy"] == "priority-last"
    assert record["train"]["n_images"] == 2 and record["train"]["source"] == {"layout": "dsb"}
    assert record["seed"] == 7 and record["history"]["epochs"][0]["val_score"] == 0.8
    assert set(record["weights"]) == {"watershed_params.json"}
    loaded = load_model(model)
    assert loaded.method.params == WatershedParams(sigma=1.0, min_distance=4, min_size=10)
    assert loaded.flatten.name == "priority-last" and loaded.seed == 7


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(format="something-else"), "unknown model format"),
        (dict(format_version=FORMAT_VERSION + 1), "newer"),
        (dict(method="no-such-method"), "unknown method"),
        (dict(method_version="0"), "version 0 of method"),
        (dict(config={"sigmass": [1.0]}), "unknown WatershedConfig field"),
        (dict(tiling={"tile": 64, "overlap": 64}), "tiling"),
    ],
)
def test_bad_records_are_refused_naming_the_file(model, change, message):
    edit(model, **change)
    with pytest.raises(DataError, match=message) as info:
        load_model(model)
    assert "model.json" in str(info.value)


def test_missing_or_altered_weights(model):
    weights = model / "weights" / "watershed_params.json"
    weights.write_text(weights.read_text().replace("4", "5"))
    with pytest.raises(DataError, match="checksum"):
        load_model(model)
    weights.unlink()
    with pytest.raises(DataError, match="missing") as info:
        load_model(model)
    assert "watershed_params.json" in str(info.value)


def test_not_a_model_directory(tmp_path, model):
    with pytest.raises(DataError, match="not found"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no model.json"):
        load_model(tmp_path / "empty")
    (model / "model.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt"):
        load_model(model)


def test_failed_save_leaves_nothing(tmp_path):
    class Broken(WatershedMethod):
        def save_weights(self, folder):
            raise OSError("disk full")

    with pytest.raises(DataError, match="disk full"):  # file-system errors come out as DataError
        save_model(Broken(), tmp_path / "m", train_summary={}, seed=0, history=TrainHistory(),
                   tiling=TileConfig())
    assert list(tmp_path.iterdir()) == []


def test_existing_model_is_not_overwritten_by_default(model):
    with pytest.raises(DataError, match="not empty"):
        save_model(WatershedMethod(), model, train_summary={}, seed=0, history=TrainHistory(), tiling=TileConfig())


def test_a_method_outside_the_table_is_passed_in(tmp_path, model):
    class Outside(WatershedMethod):
        name = "outside"

    save_model(Outside(), tmp_path / "outside", train_summary={}, seed=0, history=TrainHistory(),
               tiling=TileConfig(tile=64, overlap=16))
    with pytest.raises(DataError, match="unknown method 'outside'"):
        load_model(tmp_path / "outside")  # nothing named in model.json is imported
    loaded = load_model(tmp_path / "outside", method_class=Outside)
    assert type(loaded.method) is Outside and loaded.tiling == TileConfig(tile=64, overlap=16)
    with pytest.raises(DataError, match="model of method 'watershed', expected 'outside'") as info:
        load_model(model, method_class=Outside)
    assert "model.json" in str(info.value)


def test_loaded_model_predicts_tile_by_tile_with_its_tiling(model, blobs):
    from cellbench.methods.tiling import predict_image

    loaded = load_model(model)
    image = blobs["test"][0].load_image()
    small = TileConfig(tile=48, overlap=24)
    for tiling in (loaded.tiling, small):
        got = replace(loaded, tiling=tiling).predict(image)
        expected = predict_image(loaded.method, image, tiling)
        assert [(i.bbox, i.mask.tobytes()) for i in got] == [(i.bbox, i.mask.tobytes()) for i in expected]
