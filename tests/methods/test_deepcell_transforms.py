"""DeepCell's targets, loss and deep watershed as rewritten in semantic/deepcell.py: small images, exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.methods.adapters.semantic.deepcell import (deep_watershed, erode_edges, fill_holes, inner_distance,
                                                          pixelwise_map, weighted_cross_entropy)
from cellbench.methods.adapters.semantic.targets import BACKGROUND, BOUNDARY, INTERIOR


def two_touching_squares() -> np.ndarray:
    lab = np.zeros((9, 14), np.int32)
    lab[2:7, 2:7] = 1
    lab[2:7, 7:12] = 2
    return lab


def test_pixelwise_edges_dilate_into_the_background_only():
    lab = two_touching_squares()
    m = pixelwise_map(lab, dilation_radius=0)
    # each 5 x 5 cell: its 16 px outline is edge (the shared border too), its 3 x 3 core interior
    assert (m == INTERIOR).sum() == 18 and (m == BOUNDARY).sum() == 32 and (m[lab == 0] == BACKGROUND).all()
    dilated = pixelwise_map(lab, dilation_radius=1)
    assert ((dilated == INTERIOR) == (m == INTERIOR)).all()  # the interior keeps every pixel
    assert dilated[1, 4] == BOUNDARY and dilated[0, 4] == BACKGROUND  # one px out, not two
    assert (dilated[lab > 0] != BACKGROUND).all()


def test_inner_distance_is_one_at_the_weighted_centre_and_follows_the_formula():
    lab = np.zeros((11, 11), np.int32)
    lab[1:10, 1:10] = 3  # 9 x 9, eroded by 1 px to 7 x 7 (area 49, alpha 1/7)
    d = inner_distance(lab, erosion_width=1)
    assert d[5, 5] == pytest.approx(1.0)
    assert d[2, 5] == pytest.approx(1 / (1 + 9 / 7))  # 3 px above the centre
    assert d[1, 5] == 0 and d[0, 0] == 0  # eroded ring and background
    d2 = inner_distance(lab, erosion_width=0, alpha=0.5, beta=2.0)
    assert d2[1, 5] == pytest.approx(1 / (1 + 2 * 0.5 * 16))


def test_inner_distance_gives_every_cell_its_own_peak():
    d = inner_distance(two_touching_squares(), erosion_width=1)
    assert d[4, 4] == pytest.approx(1.0) and d[4, 9] == pytest.approx(1.0)
    assert d[4, 6] == 0 and d[4, 7] == 0  # the shared border is eroded from both cells
    assert not inner_distance(np.zeros((4, 4), np.int32)).any()
    with pytest.raises(ValueError, match="alpha"):
        inner_distance(two_touching_squares(), alpha="big")


def test_erode_edges_twice_removes_two_rings():
    lab = np.zeros((9, 9), np.int32)
    lab[1:8, 1:8] = 1
    assert erode_edges(lab, 2).sum() == 9 and erode_edges(lab, 0).sum() == 49


def test_weighted_cross_entropy_matches_the_formula():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5))
    classes = rng.integers(0, 3, size=(2, 1, 4, 5))
    onehot = np.moveaxis(np.eye(3)[classes[:, 0]], -1, 1)
    weights = onehot.sum() / (3 * (onehot.sum(axis=(0, 2, 3), keepdims=True) + 1))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(onehot * log_p * weights).sum(axis=1).mean()
    got = weighted_cross_entropy(torch.tensor(logits), torch.tensor(classes))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_deep_watershed_splits_touching_cells_and_drops_small_ones():
    lab = two_touching_squares()
    maxima = inner_distance(lab, erosion_width=1)
    interior = (lab > 0).astype(float)
    out = deep_watershed(maxima, interior, interior_smooth=0, small_objects_threshold=0, fill_holes_threshold=0)
    assert out.max() == 2 and len(np.unique(out[lab == 1])) == 1 and len(np.unique(out[lab == 2])) == 1
    assert (out > 0).sum() == (lab > 0).sum()
    # a seed too low (h-maxima of height 0.1 need a peak 0.1 above its surroundings) gives no cell
    assert deep_watershed(maxima * 0.05, interior, interior_smooth=0).max() == 0
    # both cells are 25 px: a 26 px size filter drops both
    assert deep_watershed(maxima, interior, interior_smooth=0, small_objects_threshold=26).max() == 0


def test_fill_holes_fills_small_enclosed_holes_only():
    lab = np.zeros((9, 9), np.int32)
    lab[1:8, 1:8] = 1
    lab[3, 3] = 0  # a 1 px hole
    lab[4:7, 5:7] = 0  # a 6 px hole
    filled = fill_holes(lab, 4)
    assert filled[3, 3] == 1 and (filled[4:7, 5:7] == 0).all() and (filled[0] == 0).all()
    assert (fill_holes(lab, 7)[4:7, 5:7] == 1).all()
