"""Whole-slide building blocks: the box index, flattening window by window, overlap without a coverage image."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cellbench.instances import NearestCentroidFlatten, PriorityFlatten, flatten  # noqa: E402
from cellbench.instances.box_index import BoxIndex  # noqa: E402
from cellbench.instances.flatten import WindowFlattener  # noqa: E402

from .strategies import instance_sets  # noqa: E402

FAST = settings(max_examples=150, deadline=None)
POLICIES = (PriorityFlatten("first"), PriorityFlatten("last"), NearestCentroidFlatten())


def _meet(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


boxes = st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 30), st.integers(1, 30)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@FAST
@given(st.lists(boxes, max_size=30), st.lists(st.tuples(st.integers(0, 29), boxes), max_size=5), boxes,
       st.integers(1, 40))
def test_box_index_finds_exactly_the_boxes_that_meet(filed, grown, probe, cell):
    index = BoxIndex(filed, cell=cell)
    current = list(filed)
    for k, box in grown:  # a box that grows (two pieces of a cell joined) is found by its new extent only
        if k < len(current):
            current[k] = box
            index.update(k, box)
    assert index.query(probe).tolist() == [k for k, b in enumerate(current) if _meet(b, probe)]


def _reference_nearest_centroid(s, drop=0.75) -> np.ndarray:
    """The whole-image algorithm cellbench used before windows: a coverage image, then nearest centroids."""
    coverage = s.coverage().astype(np.int32)
    kept = np.ones(len(s), dtype=bool)
    for k in np.argsort(s.areas, kind="stable"):
        inst = s[k]
        if np.count_nonzero(coverage[inst.slices][inst.mask] > 1) >= drop * inst.area:
            kept[k] = False
            coverage[inst.slices] -= inst.mask
    labels = np.zeros(s.shape, dtype=np.int64)
    nearest = np.full(s.shape, np.inf)
    for k in np.flatnonzero(kept):
        inst = s[k]
        cy, cx = inst.centroid
        yy, xx = np.ogrid[inst.bbox[0]:inst.bbox[2], inst.bbox[1]:inst.bbox[3]]
        dist = (yy - cy) ** 2 + (xx - cx) ** 2
        best = nearest[inst.slices]
        wins = inst.mask & (dist < best)
        best[wins] = dist[wins]
        labels[inst.slices][wins] = k + 1
    return labels


@FAST
@given(instance_sets(max_side=20, max_instances=8))
def test_nearest_centroid_equals_the_coverage_image_algorithm(s):
    assert np.array_equal(flatten(s, NearestCentroidFlatten()).labels, _reference_nearest_centroid(s))


@FAST
@given(instance_sets(max_side=20, max_instances=8), st.integers(1, 9), st.integers(1, 9))
def test_windows_put_together_are_the_flattened_image(s, th, tw):
    h, w = s.shape
    windows = [(y, x, min(h, y + th), min(w, x + tw)) for y in range(0, h, th) for x in range(0, w, tw)]
    for policy in POLICIES:
        whole = flatten(s, policy)
        flattener = WindowFlattener(s, policy)
        built = np.zeros(s.shape, dtype=np.int64)
        for y0, x0, y1, x1 in windows:
            labels = flattener.window((y0, x0, y1, x1))
            assert labels.dtype == whole.labels.dtype
            built[y0:y1, x0:x1] = labels
        assert np.array_equal(built, whole.labels), policy.name
        assert flattener.lost == whole.lost


@FAST
@given(instance_sets(max_side=20, max_instances=8))
def test_overlapping_is_what_the_coverage_image_says(s):
    count = s.coverage()
    expected = [bool((count[i.slices][i.mask] > 1).any()) for i in s]
    assert s.overlapping().tolist() == expected
