import json

import numpy as np
import pytest
import torch

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.methods import METHODS, config_from_dict, config_to_dict, get_method
from cellbench.methods.adapters.cellseg1 import method as method_module
from cellbench.methods.adapters.cellseg1.augment import AugmentConfig
from cellbench.methods.adapters.cellseg1.inference import InferenceConfig
from cellbench.methods.adapters.cellseg1.method import CellSeg1, CellSeg1Config
from cellbench.methods.adapters.cellseg1.train import TrainConfig, make_patches, point_loss
from cellbench.methods.adapters.cellseg1.prompts import PointSample
from cellbench.methods.tiling import TileConfig, method_tiling, predict_image

FAST = {
    "backbone": "tiny",
    "train": dict(epochs=2, patch_size=64, min_patches=2, max_positive=5, max_negative=3, batch_size=2, grad_accum=1,
                  min_cell_area=20),
    "inference": dict(points_per_side=6, points_batch=16, pred_iou_thresh=-1e9, stability_thresh=0.0,
                      max_area_fraction=1.0),
}


#: The model's tiling of these tests: tiles of the 64 px training patch need an overlap under the default 64 px.
TILING = TileConfig(tile=64, overlap=16)


def fast(**over) -> CellSeg1Config:
    """The FAST config with ``over`` on top; a section given as a dict is merged key by key."""
    values = {**FAST, **{k: {**FAST.get(k, {}), **v} if isinstance(v, dict) else v for k, v in over.items()}}
    return config_from_dict(CellSeg1Config, values)


def cellseg1(**over) -> CellSeg1:
    """A CellSeg1 of :func:`fast` that predicts with :data:`TILING` (as ``train_model`` / ``load_model`` set it)."""
    method = CellSeg1(fast(**over))
    method.tiling = TILING
    return method


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from .conftest import disks

    image, labels = disks()
    sample = Sample("disks", InstanceSet.from_label_image(labels), array=image)
    m = cellseg1()
    history = m.train([sample], seed=0)
    return m, history, image, sample


def test_registered_and_config_defaults_are_the_papers():
    assert METHODS["cellseg1"] == "cellbench.methods.adapters.cellseg1.method:CellSeg1"
    assert get_method("cellseg1") is CellSeg1
    c = CellSeg1Config()
    t, a, i = c.train, c.augment, c.inference
    assert (c.lora_rank, c.lora_dropout, t.epochs, t.batch_size, t.grad_accum) == (4, 0.1, 300, 4, 8)
    assert (t.lr, t.pct_start, t.betas, t.weight_decay) == (3e-3, 0.3, (0.9, 0.999), 0.01)
    assert (t.patch_size, t.patch_overlap, t.min_patches, t.max_positive, t.max_negative) == (256, 0.5, 32, 30, 15)
    assert (t.top_fraction, t.min_cell_area, i.points_per_side, i.points_batch) == (0.2, 100, 32, 64)
    assert (i.pred_iou_thresh, i.stability_thresh, i.stability_offset, i.nms_iou) == (0.8, 0.6, 0.8, 0.05)
    assert (i.min_area, i.max_area_fraction, c.keep_overlaps) == (20, 0.1, True)
    assert (a.brightness_limit, a.contrast_limit, a.brightness_contrast_p) == (0.1, 0.1, 0.5)
    assert (a.flip_p, a.crop_scale, a.crop_ratio, a.scale_limit, a.shift_scale_rotate_p) == (0.75, (0.3, 1.0), (0.75, 1.33), 0.5, 0.8)
    assert (a.shift_limit, a.rotate_limit) == (0.0625, 45.0)
    assert method_tiling(CellSeg1, config=c) == TileConfig(tile=256, overlap=64)  # the training patch
    with pytest.raises(ValueError):
        CellSeg1Config(lora_rank=0)


@pytest.mark.parametrize("build, message", [
    (lambda: TrainConfig(epochs=0), "train.epochs must be >= 1"),
    (lambda: TrainConfig(batch_size=0), "train.batch_size must be >= 1"),
    (lambda: TrainConfig(grad_accum=0), "train.grad_accum must be >= 1"),
    (lambda: TrainConfig(patch_size=0), "train.patch_size must be >= 1"),
    (lambda: InferenceConfig(points_per_side=0), "inference.points_per_side must be >= 1"),
    (lambda: InferenceConfig(points_batch=0), "inference.points_batch must be >= 1"),
    (lambda: CellSeg1Config(prompt="scribble"), "prompt must be"),
    (lambda: CellSeg1Config(box_scale=0), "box_scale"),
    (lambda: CellSeg1Config(box_half_side=-1.0), "box_half_side"),
    (lambda: CellSeg1Config(device="tpu"), "device must be"),
    (lambda: CellSeg1Config(lora_dropout=1.5), "dropout"),
    (lambda: config_from_dict(CellSeg1Config, {"train": {"epochs": 0}}), "train.epochs must be >= 1"),
])
def test_each_check_lives_in_its_section(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_sections_are_dataclasses_not_dicts():
    with pytest.raises(TypeError, match="TrainConfig"):
        CellSeg1Config(train={"epochs": 8})
    with pytest.raises(DataError, match=r"CellSeg1Config.inference is a section of settings: give a mapping"):
        config_from_dict(CellSeg1Config, {"inference": 16})


@pytest.mark.parametrize("values, unknown, hint", [
    ({"epochs": 8}, "unknown CellSeg1Config field(s) ['epochs']", "'epochs' is now train.epochs"),
    ({"points_per_side": 16, "flip_p": 0.5}, "['flip_p', 'points_per_side']",
     "'flip_p' is now augment.flip_p; 'points_per_side' is now inference.points_per_side"),
    ({"train": {"flip_p": 0.5}}, "unknown CellSeg1Config.train field(s) ['flip_p']", "'flip_p' is now augment.flip_p"),
    ({"inference": {"keep_overlaps": False}}, "unknown CellSeg1Config.inference field(s) ['keep_overlaps']",
     "'keep_overlaps' is now keep_overlaps (top level)"),
])
def test_a_flat_key_says_where_it_lives_now(values, unknown, hint):
    with pytest.raises(DataError) as info:
        config_from_dict(CellSeg1Config, values, source="exp.yaml")
    text = str(info.value)
    assert unknown in text and hint in text and "exp.yaml" in text
    with pytest.raises(DataError, match=r"unknown CellSeg1Config field\(s\) \['nonsense'\]; known: \[[^]]*\]$"):
        config_from_dict(CellSeg1Config, {"nonsense": 1})  # no hint for a name that is nowhere


def test_nested_config_round_trips_through_json():
    c = fast(augment={"crop_scale": [0.5, 1.0]}, train={"betas": [0.8, 0.99]}, lora_parts=["mask_decoder"])
    assert c.augment.crop_scale == (0.5, 1.0) and c.train.betas == (0.8, 0.99) and c.lora_parts == ("mask_decoder",)
    again = config_from_dict(CellSeg1Config, json.loads(json.dumps(config_to_dict(c))))
    assert again == c and config_from_dict(CellSeg1Config, {}) == CellSeg1Config()


def test_cpu_preset_is_the_dsb_table_settings():
    c = config_from_dict(CellSeg1Config, CellSeg1.presets["cpu"])
    expected = CellSeg1Config(
        backbone="litemedsam", input_size=128,
        train=TrainConfig(patch_size=128, epochs=8, batch_size=1, grad_accum=4),
        inference=InferenceConfig(points_per_side=16),
    )
    assert c == expected and method_tiling(CellSeg1, config=c) == TileConfig(tile=128, overlap=64)
    assert c.augment == AugmentConfig() and c.lora_parts == CellSeg1Config().lora_parts  # the rest is the paper's


def test_train_history_and_same_seed_same_weights(trained):
    m, history, image, sample = trained
    assert len(history.epochs) == 2 and all(np.isfinite(e.loss) for e in history.epochs)
    assert history.info["backbone"] == "tiny" and history.info["trainable_params"] > 0
    again = cellseg1()
    again.train([sample], seed=0)
    from cellbench.methods.adapters.cellseg1.lora import lora_state_dict

    a, b = lora_state_dict(m.backbone.model), lora_state_dict(again.backbone.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_predict_shape_scores_and_save_load_round_trip(trained, tmp_path):
    m, _, image, _ = trained
    pred = m.predict(image)
    assert pred.shape == image.shape and len(pred) > 0 and pred.scores is not None
    m.save_weights(tmp_path)
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all("lora_" in k for k in saved)  # LoRA only, no copy of SAM
    ident = json.loads((tmp_path / "cellseg1.json").read_text())
    assert ident["backbone"] == "tiny" and ident["sha256"] == m.backbone.sha256
    fresh = cellseg1()
    fresh.load_weights(tmp_path)
    again = fresh.predict(image)
    assert len(again) == len(pred)
    for a, b in zip(pred, again):
        assert a.bbox == b.bbox and np.array_equal(a.mask, b.mask) and a.score == pytest.approx(b.score)


def test_model_directory_round_trip_and_old_flat_directories_refused(trained, tmp_path):
    from cellbench.methods.model_dir import load_model, save_model, train_summary

    m, history, image, sample = trained
    save_model(m, tmp_path / "m", train_summary=train_summary([sample]), seed=0, history=history, tiling=TILING)
    path = tmp_path / "m" / "model.json"
    record = json.loads(path.read_text())
    assert record["method_version"] == "2" and record["config"]["train"]["epochs"] == 2
    assert "epochs" not in record["config"] and record["config"]["inference"]["points_per_side"] == 6
    loaded = load_model(tmp_path / "m")
    assert loaded.method.config == m.config and loaded.tiling == TILING
    assert len(loaded.predict(image)) == len(m.predict(image))
    # a version-1 directory: the flat config of before (every section field at the top level)
    flat = {k: v for k, v in record["config"].items() if k not in ("train", "augment", "inference")}
    for section in ("train", "augment", "inference"):
        flat.update(record["config"][section])
    path.write_text(json.dumps({**record, "method_version": "1", "config": flat}))
    with pytest.raises(DataError, match="saved by version 1 of method 'cellseg1'; this cellbench has version 2") as info:
        load_model(tmp_path / "m")
    assert "model.json" in str(info.value)
    # the same flat config under the new version number: the loader names where each key went
    path.write_text(json.dumps({**record, "config": flat}))
    with pytest.raises(DataError, match=r"'epochs' is now train.epochs.*'flip_p' is now augment.flip_p"):
        load_model(tmp_path / "m")


def test_an_old_model_directory_with_tile_in_its_config_predicts_with_those_tiles(trained, tmp_path):
    """Before the model's tiling was the only one, CellSeg1 kept ``tile`` / ``tile_overlap`` in its config and
    recorded a tiling of tile 0: such a model.json loads, its tiles read as the model's tiling."""
    from cellbench.methods.model_dir import load_model, save_model, train_summary

    m, history, image, sample = trained
    save_model(m, tmp_path / "m", train_summary=train_summary([sample]), seed=0, history=history, tiling=TILING)
    path = tmp_path / "m" / "model.json"
    record = json.loads(path.read_text())
    for tile, overlap, expected in ((None, 16, TILING), (48, 8, TileConfig(tile=48, overlap=8))):
        old = {**record, "config": {**record["config"], "tile": tile, "tile_overlap": overlap},
               "tiling": {"tile": 0, "overlap": 128}}
        path.write_text(json.dumps(old))
        loaded = load_model(tmp_path / "m")
        assert loaded.tiling == expected and loaded.method.tiling == expected and loaded.method.config == m.config
        assert same_instances(loaded.predict(image), m.predict(image, tiling=expected))


def same_instances(a: InstanceSet, b: InstanceSet) -> bool:
    return [(i.bbox, i.mask.tobytes(), i.score) for i in a] == [(i.bbox, i.mask.tobytes(), i.score) for i in b]


def test_checksum_mismatch_is_a_clear_error(trained, tmp_path):
    m, *_ = trained
    m.save_weights(tmp_path)
    ident = json.loads((tmp_path / "cellseg1.json").read_text())
    (tmp_path / "cellseg1.json").write_text(json.dumps({**ident, "sha256": "0" * 64}))
    with pytest.raises(DataError, match="sha256"):
        cellseg1().load_weights(tmp_path)
    (tmp_path / "cellseg1.json").write_text(json.dumps(ident))
    with pytest.raises(DataError, match="LoRA layout"):
        cellseg1(lora_rank=2).load_weights(tmp_path)


def _fake_tile_predictor(calls):
    """A predict_tile stand-in: one disk of radius 6 at the centre of each tile, plus an overlapping twin."""

    def fake(backbone, tile, *, side, config, progress=None, box_half_side=None):
        calls.append(tile.shape)
        h, w = tile.shape[:2]
        yy, xx = np.ogrid[:h, :w]
        disk = (yy - h // 2) ** 2 + (xx - w // 2) ** 2 < 36
        twin = (yy - h // 2) ** 2 + (xx - w // 2 - 4) ** 2 < 36
        return InstanceSet((h, w), (Instance.from_mask(disk, score=0.9), Instance.from_mask(twin, score=0.5)))

    return fake


def test_image_larger_than_the_tile_is_tiled_not_squashed(monkeypatch):
    calls = []
    monkeypatch.setattr(method_module, "predict_tile", _fake_tile_predictor(calls))
    m = cellseg1()
    pred = m.predict(np.random.default_rng(0).random((150, 130)))
    assert pred.shape == (150, 130)
    assert len(calls) > 1 and all(max(s[:2]) <= 64 for s in calls)  # full-resolution tiles
    assert len(pred) >= 2 * 3  # cells of several tiles, at tile scale (disks of ~113 px)
    assert all(80 <= inst.area <= 140 for inst in pred)


def test_the_models_tiling_is_the_one_the_grid_tiles_with(monkeypatch):
    """predict_image hands CellSeg1 the whole image and the model's tiling: its grid cuts the tiles, the generic
    stitcher does not cut them a second time; without a model tiling the tiles are the training patch's."""
    calls = []
    monkeypatch.setattr(method_module, "predict_tile", _fake_tile_predictor(calls))
    image = np.random.default_rng(0).random((150, 130))
    m = cellseg1()
    whole = []
    predict = m.predict
    monkeypatch.setattr(m, "predict", lambda img, **kw: whole.append(img.shape) or predict(img, **kw))
    tiled = predict_image(m, image, TileConfig(tile=48, overlap=8))
    assert whole == [(150, 130)] and calls and all(max(s[:2]) <= 48 for s in calls)
    assert same_instances(tiled, predict(image, tiling=TileConfig(tile=48, overlap=8)))
    calls.clear()
    CellSeg1(fast(train={"patch_size": 100})).predict(image)  # used on its own: tiles of the patch, 64 px overlap
    assert {s[:2] for s in calls} == {(100, 100)}
    with pytest.raises(DataError, match="tiling.tile must be at least 1 px"):
        predict_image(m, image, TileConfig(tile=0))
    with pytest.raises(DataError, match="cellseg1 predicts tile by tile"):
        method_tiling(CellSeg1, {"tile": 0}, config=m.config)


def test_keep_overlaps_or_flatten(monkeypatch):
    monkeypatch.setattr(method_module, "predict_tile", _fake_tile_predictor([]))
    image = np.zeros((40, 40))
    kept = cellseg1().predict(image)
    assert len(kept) == 2 and kept.n_overlapping == 2
    flat = cellseg1(keep_overlaps=False).predict(image)
    assert flat.n_overlapping == 0 and len(flat) == 2
    # the higher-scoring instance keeps the shared pixels
    best = max(flat, key=lambda i: i.score)
    assert best.score == pytest.approx(0.9) and best.area > min(i.area for i in flat)


def test_point_loss_values():
    logits = torch.zeros(2, 4, 4)
    iou = torch.tensor([1.0, 0.5])
    labels = np.zeros((8, 8), np.int32)
    labels[:4, :4] = 1
    sample = PointSample(points=np.array([[1.0, 1.0], [6.0, 6.0]]), positive=np.array([True, False]), label_ids=np.array([1, 0]))
    bce, mse = point_loss(logits, iou, labels, sample)
    assert float(bce) == pytest.approx(np.log(2))  # logits 0 -> p 0.5 against any target
    assert float(mse) == pytest.approx((0.0 + 0.25) / 2)


def test_patches_cover_with_half_overlap():
    img = np.zeros((512, 256, 3), np.uint8)
    lab = np.zeros((512, 256), np.int32)
    assert len(make_patches(img, lab, size=256, overlap=0.5)) == 3
    assert len(make_patches(img[:100, :100], lab[:100, :100], size=256)) == 1


def test_point_embeddings_can_be_trained_and_are_saved(tmp_path):
    m = cellseg1(train_point_embeddings=True)
    m.save_weights(tmp_path)
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert any(k.startswith("prompt_encoder.point_embeddings") for k in saved)
    assert all("lora_" in k or k.startswith("prompt_encoder.") for k in saved)
    with pytest.raises(DataError, match="LoRA layout"):
        cellseg1().load_weights(tmp_path)


def test_box_prompts_measure_the_cells_and_travel_with_the_weights(tmp_path):
    from .conftest import disks

    image, labels = disks()
    sample = Sample("disks", InstanceSet.from_label_image(labels), array=image)
    m = cellseg1(prompt="box", train={"epochs": 1})
    assert m.prompt == "box" and m.box_half_side == 64 / 10  # untrained: a tenth of the tile
    history = m.train([sample], seed=0)
    areas = np.bincount(labels.ravel())[1:]
    expected = 1.2 * np.sqrt(np.median(areas[areas > 0]) / np.pi)
    assert history.info["prompt"] == "box" and history.info["box_half_side"] == pytest.approx(expected)
    pred = m.predict(image)
    m.save_weights(tmp_path)
    fresh = cellseg1(prompt="box")
    fresh.load_weights(tmp_path)
    assert fresh.box_half_side == pytest.approx(expected)
    again = fresh.predict(image)
    assert len(again) == len(pred) and all(np.array_equal(a.mask, b.mask) for a, b in zip(pred, again))
    with pytest.raises(DataError, match="box prompts"):
        cellseg1().load_weights(tmp_path)  # tiny + auto = point prompts
    # a fixed size in the config wins over the measured one
    assert cellseg1(prompt="box", box_half_side=3.0).box_half_side == 3.0


def test_prompt_kind_follows_the_backbone():
    assert CellSeg1(CellSeg1Config(backbone="litemedsam")).prompt == "box"
    assert CellSeg1(CellSeg1Config(backbone="vit_b")).prompt == "point"
    assert CellSeg1(CellSeg1Config(backbone="litemedsam", prompt="point")).prompt == "point"
    assert CellSeg1(CellSeg1Config(backbone="vit_b")).box_half_side is None
    with pytest.raises(ValueError, match="prompt"):
        CellSeg1Config(prompt="scribble")
