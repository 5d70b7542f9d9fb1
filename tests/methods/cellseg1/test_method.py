import json

import numpy as np
import pytest
import torch

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.methods import METHODS, get_method
from cellbench.methods.cellseg1 import method as method_module
from cellbench.methods.cellseg1.method import CellSeg1, CellSeg1Config
from cellbench.methods.cellseg1.train import make_patches, point_loss
from cellbench.methods.cellseg1.prompts import PointSample

FAST = dict(
    backbone="tiny", epochs=2, patch_size=64, min_patches=2, max_positive=5, max_negative=3, batch_size=2, grad_accum=1,
    points_per_side=6, points_batch=16, min_cell_area=20, tile_overlap=16,
    pred_iou_thresh=-1e9, stability_thresh=0.0, max_area_fraction=1.0,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from .conftest import disks

    image, labels = disks()
    sample = Sample("disks", InstanceSet.from_label_image(labels), array=image)
    m = CellSeg1(CellSeg1Config(**FAST))
    history = m.train([sample], seed=0)
    return m, history, image, sample


def test_registered_and_config_defaults_are_the_papers():
    assert METHODS["cellseg1"] == "cellbench.methods.cellseg1.method:CellSeg1"
    assert get_method("cellseg1") is CellSeg1
    c = CellSeg1Config()
    assert (c.lora_rank, c.lora_dropout, c.epochs, c.batch_size, c.grad_accum) == (4, 0.1, 300, 4, 8)
    assert (c.lr, c.pct_start, c.betas, c.weight_decay) == (3e-3, 0.3, (0.9, 0.999), 0.01)
    assert (c.patch_size, c.patch_overlap, c.min_patches, c.max_positive, c.max_negative) == (256, 0.5, 32, 30, 15)
    assert (c.top_fraction, c.min_cell_area, c.points_per_side) == (0.2, 100, 32)
    assert (c.pred_iou_thresh, c.stability_thresh, c.stability_offset, c.nms_iou) == (0.8, 0.6, 0.8, 0.05)
    assert (c.min_area, c.max_area_fraction, c.keep_overlaps) == (20, 0.1, True)
    assert (c.flip_p, c.crop_scale, c.crop_ratio, c.scale_limit, c.shift_scale_rotate_p) == (0.75, (0.3, 1.0), (0.75, 1.33), 0.5, 0.8)
    with pytest.raises(ValueError):
        CellSeg1Config(lora_rank=0)


def test_train_history_and_same_seed_same_weights(trained):
    m, history, image, sample = trained
    assert len(history.epochs) == 2 and all(np.isfinite(e.loss) for e in history.epochs)
    assert history.info["backbone"] == "tiny" and history.info["trainable_params"] > 0
    again = CellSeg1(CellSeg1Config(**FAST))
    again.train([sample], seed=0)
    from cellbench.methods.cellseg1.lora import lora_state_dict

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
    fresh = CellSeg1(CellSeg1Config(**FAST))
    fresh.load_weights(tmp_path)
    again = fresh.predict(image)
    assert len(again) == len(pred)
    for a, b in zip(pred, again):
        assert a.bbox == b.bbox and np.array_equal(a.mask, b.mask) and a.score == pytest.approx(b.score)


def test_checksum_mismatch_is_a_clear_error(trained, tmp_path):
    m, *_ = trained
    m.save_weights(tmp_path)
    ident = json.loads((tmp_path / "cellseg1.json").read_text())
    (tmp_path / "cellseg1.json").write_text(json.dumps({**ident, "sha256": "0" * 64}))
    with pytest.raises(DataError, match="sha256"):
        CellSeg1(CellSeg1Config(**FAST)).load_weights(tmp_path)
    (tmp_path / "cellseg1.json").write_text(json.dumps(ident))
    with pytest.raises(DataError, match="LoRA layout"):
        CellSeg1(CellSeg1Config(**{**FAST, "lora_rank": 2})).load_weights(tmp_path)


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
    m = CellSeg1(CellSeg1Config(**{**FAST, "tile": 64, "tile_overlap": 16}))
    pred = m.predict(np.random.default_rng(0).random((150, 130)))
    assert pred.shape == (150, 130)
    assert len(calls) > 1 and all(max(s[:2]) <= 64 for s in calls)  # full-resolution tiles
    assert len(pred) >= 2 * 3  # cells of several tiles, at tile scale (disks of ~113 px)
    assert all(80 <= inst.area <= 140 for inst in pred)


def test_keep_overlaps_or_flatten(monkeypatch):
    monkeypatch.setattr(method_module, "predict_tile", _fake_tile_predictor([]))
    image = np.zeros((40, 40))
    kept = CellSeg1(CellSeg1Config(**FAST)).predict(image)
    assert len(kept) == 2 and kept.n_overlapping == 2
    flat = CellSeg1(CellSeg1Config(**{**FAST, "keep_overlaps": False})).predict(image)
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
    m = CellSeg1(CellSeg1Config(**{**FAST, "train_point_embeddings": True}))
    m.save_weights(tmp_path)
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert any(k.startswith("prompt_encoder.point_embeddings") for k in saved)
    assert all("lora_" in k or k.startswith("prompt_encoder.") for k in saved)
    with pytest.raises(DataError, match="LoRA layout"):
        CellSeg1(CellSeg1Config(**FAST)).load_weights(tmp_path)


def test_box_prompts_measure_the_cells_and_travel_with_the_weights(tmp_path):
    from .conftest import disks

    image, labels = disks()
    sample = Sample("disks", InstanceSet.from_label_image(labels), array=image)
    m = CellSeg1(CellSeg1Config(**{**FAST, "prompt": "box", "epochs": 1}))
    assert m.prompt == "box" and m.box_half_side == 64 / 10  # untrained: a tenth of the tile
    history = m.train([sample], seed=0)
    areas = np.bincount(labels.ravel())[1:]
    expected = 1.2 * np.sqrt(np.median(areas[areas > 0]) / np.pi)
    assert history.info["prompt"] == "box" and history.info["box_half_side"] == pytest.approx(expected)
    pred = m.predict(image)
    m.save_weights(tmp_path)
    fresh = CellSeg1(CellSeg1Config(**{**FAST, "prompt": "box"}))
    fresh.load_weights(tmp_path)
    assert fresh.box_half_side == pytest.approx(expected)
    again = fresh.predict(image)
    assert len(again) == len(pred) and all(np.array_equal(a.mask, b.mask) for a, b in zip(pred, again))
    with pytest.raises(DataError, match="box prompts"):
        CellSeg1(CellSeg1Config(**FAST)).load_weights(tmp_path)  # tiny + auto = point prompts
    # a fixed size in the config wins over the measured one
    assert CellSeg1(CellSeg1Config(**{**FAST, "prompt": "box", "box_half_side": 3.0})).box_half_side == 3.0


def test_prompt_kind_follows_the_backbone():
    assert CellSeg1(CellSeg1Config(backbone="litemedsam")).prompt == "box"
    assert CellSeg1(CellSeg1Config(backbone="vit_b")).prompt == "point"
    assert CellSeg1(CellSeg1Config(backbone="litemedsam", prompt="point")).prompt == "point"
    assert CellSeg1(CellSeg1Config(backbone="vit_b")).box_half_side is None
    with pytest.raises(ValueError, match="prompt"):
        CellSeg1Config(prompt="scribble")
