"""The small-region cleanup on bounding-box crops equals the whole-tile version it replaced."""

import numpy as np
import pytest
from scipy import ndimage

from cellbench.methods.adapters.cellseg1.inference import _clean, _clean_full


def random_masks(seed=0, n=600):
    """Noise, opened noise, noisy disks (many touching the tile edge), tiny and empty masks."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        kind = k % 4
        if kind == 0:
            mask = rng.random((h, w)) < rng.random()
        elif kind == 1:
            mask = ndimage.binary_opening(rng.random((h, w)) < 0.6)
        elif kind == 2:
            yy, xx = np.ogrid[:h, :w]
            y, x, r = rng.integers(-4, h + 4), rng.integers(-4, w + 4), rng.integers(1, 14)
            mask = ((yy - y) ** 2 + (xx - x) ** 2 < r * r) & (rng.random((h, w)) < 0.93)
        else:
            mask = np.zeros((h, w), bool)
            mask[tuple(rng.integers(0, (h, w), size=(rng.integers(0, 6), 2)).T)] = True
        yield mask, int(rng.integers(0, 30))


@pytest.mark.parametrize("seed", [0, 1])
def test_crop_cleanup_equals_whole_tile_cleanup(seed):
    changed = 0
    for mask, min_area in random_masks(seed):
        original = mask.copy()
        got, expected = _clean(mask, min_area), _clean_full(mask, min_area)
        assert got.dtype == bool and got.shape == mask.shape
        np.testing.assert_array_equal(got, expected, err_msg=f"min_area={min_area}\n{mask.astype(int)}")
        np.testing.assert_array_equal(mask, original)  # the input is left alone
        changed += not np.array_equal(got, mask)
    assert changed > 100  # the cleanup did something on many of them


def test_crop_cleanup_cases_at_the_tile_edge():
    # a pocket of background between the mask and the top edge: a hole of 3 pixels, filled
    m = np.zeros((10, 10), bool)
    m[0:4, 2:8] = True
    m[0, 4:7] = False
    assert _clean(m, 5)[0, 4:7].all() and _clean_full(m, 5)[0, 4:7].all()
    # the same gap open to the rest of the tile through a box side: not a hole
    m[0:4, 7] = False
    m[0, 3:8] = False
    np.testing.assert_array_equal(_clean(m, 5), _clean_full(m, 5))
    assert not _clean(m, 5)[0, 4:7].any()
    # a 2 x 2 mask whose surrounding ring is under min_area inside the box: the whole tile decides
    m = np.zeros((12, 12), bool)
    m[5:7, 5:7] = True
    np.testing.assert_array_equal(_clean(m, 20), _clean_full(m, 20))
    assert not _clean(m, 20).any()
