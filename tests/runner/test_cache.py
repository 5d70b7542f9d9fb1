"""Prediction cache: lossless round trip, atomic files."""

from __future__ import annotations

import numpy as np

from cellbench.instances import Instance, InstanceSet
from cellbench.runner import PredictionCache, instances_from_json, instances_to_json


def _overlapping() -> InstanceSet:
    a = Instance(np.ones((3, 3), bool), (0, 0, 3, 3), class_id=0, score=0.9)
    b = Instance(np.eye(4, dtype=bool), (1, 1, 5, 5), class_id=1, score=0.25)
    return InstanceSet((6, 7), (a, b), classes=("cell", "soma"))


def test_round_trip_keeps_overlaps_classes_and_scores():
    s = _overlapping()
    back = instances_from_json(instances_to_json(s))
    assert back.shape == s.shape and back.classes == s.classes
    for x, y in zip(s, back):
        assert x.bbox == y.bbox and np.array_equal(x.mask, y.mask)
        assert (x.class_id, x.score) == (y.class_id, y.score)
    assert back.n_overlapping == 2


def test_cache_files_are_whole_and_named_safely(tmp_path):
    cache = PredictionCache(tmp_path, "abc")
    assert cache.load_prediction("test", "img 1/x") is None
    cache.save_prediction("test", "img 1/x", _overlapping(), 1.5)
    got, seconds = cache.load_prediction("test", "img 1/x")
    assert seconds == 1.5 and len(got) == 2
    files = [p.name for p in (tmp_path / "abc" / "pred" / "test").iterdir()]
    assert files == ["img_1_x.json"]  # no temporary file left behind
    cache.save_prediction(None, "y", InstanceSet((2, 2)), 0.0)
    assert len(cache.load_prediction(None, "y")[0]) == 0


def test_decoding_equals_pycocotools_on_random_masks():
    """Each cached instance decodes to the tight crop of pycocotools' full-image decoding, runs across columns too."""
    import pycocotools.mask as mask_utils

    from cellbench.instances import instance_to_rle, rle_to_instance

    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 13, 2))
        full = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        if not full.any():
            full[rng.integers(h), rng.integers(w)] = True
        inst = Instance.from_mask(full)
        for rle in (instance_to_rle(inst, (h, w)), mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))):
            back = rle_to_instance(rle, class_id=0)
            expected = Instance.from_mask(mask_utils.decode(rle).astype(bool))
            assert back.bbox == expected.bbox == inst.bbox
            np.testing.assert_array_equal(back.mask, expected.mask)
    # Uncompressed counts with empty runs, and a run from one column into the next.
    back = rle_to_instance({"size": [3, 3], "counts": [2, 0, 0, 3, 4]})
    assert back.bbox == (0, 0, 3, 2)
    np.testing.assert_array_equal(back.to_full((3, 3)), [[0, 1, 0], [0, 1, 0], [1, 0, 0]])
