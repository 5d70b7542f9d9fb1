"""Tiling and stitching: border-crossing cells come out once, exactly, with their scores."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse
from skimage.measure import label

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.methods.tiling import TileConfig, method_tiling, predict_image, predict_tiled, tile_windows


def components(tile: np.ndarray) -> InstanceSet:
    """A translation-equivariant predictor: connected components, scored by area."""
    found = InstanceSet.from_label_image(label(tile > 0).astype(np.int32))
    return found.replace(instances=tuple(i.replace(score=i.area / 1000.0, source_id=None) for i in found))


def masks(s: InstanceSet) -> set[tuple]:
    return {(i.bbox, i.mask.tobytes()) for i in s}


def disks(shape, centres, radius):
    img = np.zeros(shape, np.uint8)
    for c in centres:
        img[disk(c, radius, shape=shape)] = 1
    return img


def test_windows_cover_the_image_flush_with_its_edges():
    wins = tile_windows((1944, 2592), TileConfig(tile=512, overlap=128))
    assert len(wins) == 5 * 7
    assert {w[2] - w[0] for w in wins} == {512} and {w[3] - w[1] for w in wins} == {512}
    cover = np.zeros((1944, 2592), np.int32)
    for y0, x0, y1, x1 in wins:
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    assert max(w[2] for w in wins) == 1944 and max(w[3] for w in wins) == 2592


def test_small_image_or_zero_tile_is_one_window():
    assert tile_windows((100, 300), TileConfig(tile=512)) == [(0, 0, 100, 300)]
    assert tile_windows((5000, 5000, 3), TileConfig(tile=0)) == [(0, 0, 5000, 5000)]
    assert tile_windows((100, 700), TileConfig(tile=512, overlap=128)) == [(0, 0, 100, 512), (0, 188, 100, 700)]


@pytest.mark.parametrize("bad", [dict(tile=-1), dict(tile=64, overlap=64), dict(overlap=-2), dict(tile=1.5)])
def test_bad_tile_config(bad):
    with pytest.raises(ValueError):
        TileConfig(**bad)


def test_cells_crossing_tile_borders_are_recovered_exactly_and_once():
    rng = np.random.default_rng(0)
    shape = (300, 410)
    centres = [(int(y), int(x)) for y, x in zip(rng.integers(10, 290, 40), rng.integers(10, 400, 40))]
    # cells right on the borders of the 128/32 windows (starts 0, 96, 192, ...)
    centres += [(64, 112), (110, 128), (128, 200), (190, 224), (120, 120)]
    img = disks(shape, centres, 9)
    whole = components(img)
    cfg = TileConfig(tile=128, overlap=32)
    tiled = predict_tiled(components, img, cfg)
    assert len(tiled) == len(whole)
    assert masks(tiled) == masks(whole)
    assert sorted(tiled.scores.tolist()) == sorted(whole.scores.tolist())


def test_cell_larger_than_the_overlap_is_joined_not_cut():
    img = np.zeros((200, 200), np.uint8)
    img[ellipse(100, 100, 20, 70, shape=img.shape)] = 1  # 141 px wide, crosses two borders
    tiled = predict_tiled(components, img, TileConfig(tile=96, overlap=24))
    assert len(tiled) == 1
    assert masks(tiled) == masks(components(img))


def test_overlapping_instances_of_one_tile_survive_and_classes_are_kept():
    img = disks((200, 200), [(50, 50), (100, 100), (150, 160)], 12)

    def two_per_cell(tile):
        out = []
        for inst in components(tile):
            out.append(inst.replace(class_id=0))
            bigger = np.pad(inst.mask, 2, constant_values=True)  # a second instance over the same cell
            out.append(Instance.from_mask(bigger, offset=(inst.bbox[0] - 2, inst.bbox[1] - 2), class_id=1, score=0.5))
        out = [i for i in out if i.bbox[0] >= 0 and i.bbox[1] >= 0
               and i.bbox[2] <= tile.shape[0] and i.bbox[3] <= tile.shape[1]]
        return InstanceSet(tile.shape[:2], tuple(out), classes=("a", "b"))

    whole = two_per_cell(img)
    tiled = predict_tiled(two_per_cell, img, TileConfig(tile=100, overlap=40))
    assert tiled.classes == ("a", "b")
    assert len(tiled) == len(whole) == 6
    assert tiled.n_overlapping == 6
    assert sorted(tiled.class_ids.tolist()) == [0, 0, 0, 1, 1, 1]


def test_multichannel_image_and_progress():
    img = np.stack([disks((150, 150), [(75, 75), (20, 130)], 10)] * 2, axis=-1)
    seen = []

    def progress(it, **kw):
        seen.append(kw)
        return it

    tiled = predict_tiled(lambda t: components(t[..., 0]), img, TileConfig(tile=64, overlap=24), progress=progress)
    assert len(tiled) == 2 and tiled.shape == (150, 150) and seen


def test_predictor_returning_the_wrong_shape_is_an_error():
    with pytest.raises(DataError, match="shape"):
        predict_tiled(lambda t: InstanceSet((1, 1)), np.zeros((100, 100)), TileConfig(tile=64, overlap=16))


class _Components:
    """The smallest method-like object: ``predict`` is the components predictor."""

    def __init__(self, default_tiling=None):
        self.default_tiling = default_tiling

    def predict(self, image):
        return components(image)


def test_predict_image_is_the_tiled_prediction_of_the_method():
    img = disks((120, 130), [(20, 20), (60, 63), (100, 110), (30, 100)], 9)
    tiling = TileConfig(tile=48, overlap=24)
    got = predict_image(_Components(), img, tiling)
    assert masks(got) == masks(predict_tiled(components, img, tiling)) == masks(components(img))
    assert [i.score for i in got] == [i.score for i in predict_tiled(components, img, tiling)]


class _TilesItself:
    """A method that cuts its own tiles with the tiling it is given (as SAM and CellSeg1 do)."""

    name, tiles_itself = "grid", True

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def predict(self, image, *, tiling, progress=None):
        self.calls.append((image.shape, tiling))
        return predict_tiled(components, image, tiling)


def test_predict_image_hands_a_method_that_tiles_itself_the_whole_image_and_the_tiling():
    img = disks((120, 130), [(20, 20), (60, 63), (100, 110), (30, 100)], 9)
    tiling = TileConfig(tile=48, overlap=24)
    method = _TilesItself()
    got = predict_image(method, img, tiling)
    assert method.calls == [((120, 130), tiling)]  # once: not tiled a second time around it
    assert masks(got) == masks(predict_tiled(components, img, tiling))
    with pytest.raises(DataError, match="grid predicts tile by tile: tiling.tile must be at least 1 px"):
        method_tiling(_TilesItself, {"tile": 0}, source="exp.yaml")


def test_method_tiling_merges_the_given_values_over_the_method_default():
    assert method_tiling(_Components) == TileConfig()
    tiled = type("Tiled", (), {"default_tiling": TileConfig(tile=256, overlap=32)})
    assert method_tiling(tiled) == TileConfig(tile=256, overlap=32)
    assert method_tiling(tiled, {"overlap": 64}) == TileConfig(tile=256, overlap=64)
    assert method_tiling(tiled, {"tile": 0, "overlap": 0}) == TileConfig(tile=0, overlap=0)


@pytest.mark.parametrize(
    "values, message",
    [({"tile": 64, "overlap": 64}, "smaller than tile"), ({"tiles": 64}, "unknown tiling field"),
     ([64, 16], "must be a mapping"), ({"tile": "big"}, "bad tiling")],
)
def test_method_tiling_refuses_bad_values_naming_the_source(values, message):
    with pytest.raises(DataError, match=message) as info:
        method_tiling(_Components, values, source="exp.yaml")
    assert str(info.value).startswith("exp.yaml: ")
