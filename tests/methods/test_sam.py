"""Zero-shot SAM: CellSeg1's grid path without LoRA; training only calibrates the box size."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from cellbench.errors import DataError  # noqa: E402
from cellbench.methods import config_from_dict, get_method  # noqa: E402

GRID = {"points_per_side": 4, "points_batch": 16, "pred_iou_thresh": -1e9, "stability_thresh": 0.0,
        "max_area_fraction": 1.0}


def sam(**over):
    cls = get_method("sam")
    return cls(config_from_dict(cls.Config, {"backbone": "tiny", "tile": 64, "tile_overlap": 16,
                                             "inference": GRID, **over}))


def test_defaults_are_sams_automatic_mask_generator():
    grid = get_method("sam").Config().inference
    assert (grid.points_per_side, grid.pred_iou_thresh, grid.stability_thresh, grid.stability_offset,
            grid.nms_iou) == (32, 0.88, 0.95, 1.0, 0.7)


def test_zero_shot_sam_is_untrained_cellseg1(blobs):
    """Same backbone, same grid path: an untrained CellSeg1 (LoRA B = 0) predicts exactly what SAM does."""
    cs1 = get_method("cellseg1")
    cellseg1 = cs1(config_from_dict(cs1.Config, {"backbone": "tiny", "tile": 64, "tile_overlap": 16,
                                                 "prompt": "box", "box_half_side": 6.0, "inference": GRID}))
    image = blobs["test"][0].load_image()
    a, b = sam(prompt="box", box_half_side=6.0).predict(image), cellseg1.predict(image)
    assert len(a) > 0
    assert [(i.bbox, i.mask.tobytes(), i.score) for i in a] == [(i.bbox, i.mask.tobytes(), i.score) for i in b]


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
