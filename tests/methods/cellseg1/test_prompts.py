from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from cellbench.methods.adapters.cellseg1.prompts import GridPrompts, sample_points
from cellbench.methods.tiling import TileConfig


def _grid_cells(n_side=8, size=14, gap=4):
    side = n_side * (size + gap) + gap
    labels = np.zeros((side, side), np.int32)
    k = 1
    for i in range(n_side):
        for j in range(n_side):
            y, x = gap + i * (size + gap), gap + j * (size + gap)
            labels[y : y + size, x : x + size] = k
            k += 1
    return labels


def test_counts_are_capped_at_30_positive_and_15_negative():
    labels = _grid_cells()  # 64 cells of 196 px
    s = sample_points(labels, np.random.default_rng(0))
    assert s.positive.sum() == 30 and (~s.positive).sum() == 15
    assert len(set(s.label_ids[s.positive].tolist())) == 30  # one point per cell
    assert (s.label_ids[~s.positive] == 0).all()


def test_positive_points_are_in_the_most_interior_fifth_of_their_cell():
    labels = _grid_cells(n_side=3, size=20)
    s = sample_points(labels, np.random.default_rng(1), top_fraction=0.2)
    for (x, y), label in zip(s.points[s.positive].astype(int), s.label_ids[s.positive]):
        assert labels[y, x] == label
        cell = np.pad(labels == label, 1)
        dist = ndimage.distance_transform_edt(cell)[1:-1, 1:-1]
        values = np.sort(dist[labels == label])[::-1]
        cutoff = values[int(np.ceil(0.2 * values.size)) - 1]
        assert dist[y, x] >= cutoff


def test_negative_points_are_far_from_cells():
    labels = np.zeros((100, 100), np.int32)
    labels[:50, :50] = 1
    s = sample_points(labels, np.random.default_rng(0), max_negative=15)
    neg = s.points[~s.positive].astype(int)
    assert len(neg) == 15
    dist = ndimage.distance_transform_edt(labels == 0)
    values = np.sort(dist[labels == 0])[::-1]
    cutoff = values[int(np.ceil(0.2 * values.size)) - 1]
    assert all(dist[y, x] >= cutoff and labels[y, x] == 0 for x, y in neg)


def test_cells_below_100_px_are_ignored_and_not_background():
    labels = np.zeros((60, 60), np.int32)
    labels[5:14, 5:16] = 1  # 99 px
    labels[30:40, 30:40] = 2  # 100 px
    s = sample_points(labels, np.random.default_rng(0), max_negative=200)
    assert s.label_ids[s.positive].tolist() == [2]
    neg = s.points[~s.positive].astype(int)
    assert all(labels[y, x] == 0 for x, y in neg)


def test_same_seed_same_points_other_seed_other_points():
    labels = _grid_cells()
    a = sample_points(labels, np.random.default_rng(7))
    b = sample_points(labels, np.random.default_rng(7))
    c = sample_points(labels, np.random.default_rng(8))
    assert np.array_equal(a.points, b.points) and np.array_equal(a.label_ids, b.label_ids)
    assert not np.array_equal(a.points, c.points)


def test_empty_and_all_background_images():
    s = sample_points(np.zeros((20, 20), np.int32), np.random.default_rng(0))
    assert s.positive.sum() == 0 and len(s) == 15
    s = sample_points(np.ones((20, 20), np.int32), np.random.default_rng(0))
    assert len(s) == 1 and s.positive.all()
    with pytest.raises(ValueError):
        sample_points(np.zeros((2, 2, 2), np.int32), np.random.default_rng(0))


def test_grid_prompts_kind_and_box_half_side():
    class Grid(GridPrompts):
        prediction_tiling = TileConfig(tile=200, overlap=50)

        def __init__(self, **config):
            self.config = SimpleNamespace(**{"prompt": "auto", "backbone": "litemedsam", "box_half_side": None,
                                             **config})
            self._measured_half_side = None

    assert Grid().prompt == "box" and Grid(backbone="vit_b").prompt == "point"
    assert Grid(backbone="vit_b").box_half_side is None and Grid(prompt="box", backbone="vit_b").prompt == "box"
    grid = Grid()
    assert grid.box_half_side == 20.0 and grid._box_half_side(TileConfig(tile=100, overlap=0)) == 10.0
    grid._measured_half_side = 7.0
    assert grid.box_half_side == 7.0 and Grid(box_half_side=3.0).box_half_side == 3.0
