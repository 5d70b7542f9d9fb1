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
