"""Preprocessing steps: exact answers on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.instances import InstanceSet
from cellbench.methods.preprocess import (
    PreprocessConfig, clahe, crop_instances, percentile_normalize, preprocess, replicate_patches,
    sliding_windows, window_positions,
)


def test_percentile_normalize_maps_percentiles_to_0_and_1_per_channel():
    rng = np.random.default_rng(0)
    img = np.stack([rng.uniform(0, 10, (50, 50)), rng.uniform(100, 1000, (50, 50))], axis=-1)
    out = percentile_normalize(img, low=0.1, high=99.9)
    for c in range(2):
        lo, hi = np.percentile(out[..., c], [0.1, 99.9])
        assert lo == pytest.approx(0.0, abs=1e-5) and hi == pytest.approx(1.0, abs=1e-5)
    assert percentile_normalize(np.full((4, 4), 7.0)).max() == 0.0


def test_clahe_raises_local_contrast():
    img = np.zeros((128, 128))
    img[:, 64:] = 0.5
    img[32:40, 16:24] = 0.1  # faint spot on the dark half
    out = clahe(img)
    assert out[36, 20] - out[10, 10] > 0.1
    assert clahe(np.stack([img, img], -1)).shape == (128, 128, 2)


def test_preprocess_config_and_errors():
    out = preprocess(np.arange(16, dtype=np.uint16).reshape(4, 4), PreprocessConfig(normalize="none"))
    assert out.dtype == np.float32 and out.max() == 15
    with pytest.raises(ValueError):
        PreprocessConfig(low=50, high=10)
    with pytest.raises(ValueError):
        PreprocessConfig(normalize="zscore")


def test_sliding_windows_256_step_192_cover_the_image():
    wins = window_positions((520, 700))
    assert [w[0] for w in wins[:: len({w[1] for w in wins})]] == [0, 192, 264]
    assert sorted({w[1] for w in wins}) == [0, 192, 384, 444]
    cover = np.zeros((520, 700), int)
    for y0, x0, y1, x1 in wins:
        assert (y1 - y0, x1 - x0) == (256, 256)
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    assert [p.shape for p in sliding_windows(np.zeros((100, 50, 3)))] == [(100, 50, 3)]


def test_crop_instances_cuts_to_the_window():
    labels = np.zeros((10, 10), np.int32)
    labels[2:6, 2:6] = 1
    labels[7:9, 7:9] = 2
    cut = crop_instances(InstanceSet.from_label_image(labels), (4, 4, 10, 10))
    assert cut.shape == (6, 6) and [i.bbox for i in cut] == [(0, 0, 2, 2), (3, 3, 5, 5)]
    assert [i.source_id for i in cut] == [1, 2]


def test_replicate_patches_to_at_least_32():
    assert len(replicate_patches(list(range(5)))) == 35
    assert len(replicate_patches(list(range(40)))) == 40
    with pytest.raises(ValueError):
        replicate_patches([])
