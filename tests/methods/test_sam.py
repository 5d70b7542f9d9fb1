"""Zero-shot SAM: CellSeg1's grid path without LoRA; training only calibrates the box size."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from cellbench.errors import DataError  # noqa: E402
from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.tiling import TileConfig, method_tiling, predict_image  # noqa: E402

GRID = {"points_per_side": 4, "points_batch": 16, "pred_iou_thresh": -1e9, "stability_thresh": 0.0,
        "max_area_fraction": 1.0}


#: The model's tiling of these tests (train_model and load_model set it; here by hand).
TILING = TileConfig(tile=64, overlap=16)


def sam(**over):
    cls = get_method("sam")
    method = cls(config_from_dict(cls.Config, {"backbone": "tiny", "inference": GRID, **over}))
    method.tiling = TILING
    return method


def same(a, b) -> bool:
    return [(i.bbox, i.mask.tobytes(), i.score) for i in a] == [(i.bbox, i.mask.tobytes(), i.score) for i in b]


def test_defaults_are_sams_automatic_mask_generator():
    grid = get_method("sam").Config().inference
    assert (grid.points_per_side, grid.pred_iou_thresh, grid.stability_thresh, grid.stability_offset,
            grid.nms_iou) == (32, 0.88, 0.95, 1.0, 0.7)


def test_zero_shot_sam_is_untrained_cellseg1(blobs):
    """Same backbone, same grid path: an untrained CellSeg1 (LoRA B = 0) predicts exactly what SAM does."""
    cs1 = get_method("cellseg1")
    cellseg1 = cs1(config_from_dict(cs1.Config, {"backbone": "tiny", "prompt": "box", "box_half_side": 6.0,
                                                 "inference": GRID}))
    cellseg1.tiling = TILING
    image = blobs["test"][0].load_image()
    a, b = sam(prompt="box", box_half_side=6.0).predict(image), cellseg1.predict(image)
    assert len(a) > 0 and same(a, b)


def test_training_measures_the_box_and_trains_nothing(blobs):
    method = sam(prompt="box")
    assert method.box_half_side == 6.4  # a tenth of the tile before calibration
    history = method.train(blobs["train"], seed=0)
    radius = np.sqrt(np.median(np.concatenate([s.instances.areas for s in blobs["train"]])) / np.pi)
    assert method.box_half_side == pytest.approx(1.2 * radius)
    assert history.info["trainable_params"] == 0 and history.info["zero_shot"]
    assert len(history.epochs) == 1 and 0.0 <= history.epochs[0].loss <= 1.0


def test_calibration_of_another_backbone_is_refused(blobs, tmp_path):
    method = sam(prompt="box")
    method.train(blobs["train"][:1], seed=0)
    method.save_weights(tmp_path)
    text = (tmp_path / "sam.json").read_text().replace('"tiny"', '"vit_b"')
    (tmp_path / "sam.json").write_text(text)
    with pytest.raises(DataError, match="vit_b"):
        sam().load_weights(tmp_path)


def test_the_models_tiling_is_the_one_the_grid_tiles_with(blobs):
    """SAM's grid runs on the tiles of the model's tiling (256 px tiles, 64 px overlap by default; the cpu
    preset 128 px); predict_image hands it the whole image, so nothing is tiled twice; tile 0 is refused."""
    cls = get_method("sam")
    assert method_tiling(cls) == TileConfig(tile=256, overlap=64) == cls(None).prediction_tiling
    cpu = dict(cls.presets["cpu"])
    assert method_tiling(cls, cpu.pop("tiling")) == TileConfig(tile=128, overlap=64)
    config_from_dict(cls.Config, cpu)
    image = blobs["test"][0].load_image()
    method = sam()
    small = TileConfig(tile=48, overlap=8)
    by_model = predict_image(method, image, small)
    assert len(by_model) > 0 and same(by_model, method.predict(image, tiling=small))
    assert not same(by_model, predict_image(method, image, TILING))  # the tiling given is the one used
    with pytest.raises(DataError, match="tiling.tile must be at least 1 px"):
        predict_image(method, image, TileConfig(tile=0))
    with pytest.raises(DataError, match="sam predicts tile by tile"):
        method_tiling(cls, {"tile": 0})


def test_an_old_config_or_model_with_tile_keys_maps_onto_the_tiling(blobs, tmp_path, caplog):
    """``tile`` / ``tile_overlap`` in SAM's config were its tiling: a config file, an experiment and a
    model.json that still hold them are read with them as the model's tiling, and the same predictions."""
    from cellbench.methods.model_dir import load_model, save_model, train_summary
    from cellbench.methods.tiling import move_old_tiling_keys

    cls = get_method("sam")
    with caplog.at_level("WARNING"):
        values = move_old_tiling_keys(cls, {"backbone": "tiny", "tile": 64, "tile_overlap": 16}, source="old.yaml")
    assert values == {"backbone": "tiny", "tiling": {"tile": 64, "overlap": 16}}
    assert "old.yaml: sam settings tile and tile_overlap are the model's tiling now" in caplog.text
    assert move_old_tiling_keys(cls, {"tile": 200})["tiling"] == {"tile": 200, "overlap": 64}  # the old default
    assert move_old_tiling_keys(get_method("watershed"), {"tile": 1}) == {"tile": 1}  # never had them: refused later
    with pytest.raises(DataError, match="give tiling only"):
        move_old_tiling_keys(cls, {"tile": 64, "tiling": {"tile": 64}})

    method = sam(prompt="box")
    history = method.train(blobs["train"][:1], seed=0)
    save_model(method, tmp_path / "m", train_summary=train_summary(blobs["train"][:1]), seed=0, history=history,
               tiling=TILING)
    path = tmp_path / "m" / "model.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "config": {**record["config"], "tile": 64, "tile_overlap": 16},
                                "tiling": {"tile": 0, "overlap": 128}}))
    loaded = load_model(tmp_path / "m")
    assert loaded.tiling == TILING and loaded.method.config == method.config
    image = blobs["test"][0].load_image()
    assert same(loaded.predict(image), method.predict(image))
