"""Properties of RLE, polygons and flatten policies, on masks and instance sets drawn by hypothesis."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cellbench.instances import (  # noqa: E402
    Instance,
    NearestCentroidFlatten,
    PriorityFlatten,
    flatten,
    instance_geometry,
    instance_to_rle,
    rasterize_polygon,
    rle_area,
    rle_to_instance,
)

from ..data.layouts.test_coco import uncompressed_rle  # noqa: E402
from .strategies import instance_sets, masks, shapes  # noqa: E402
from .test_polygons import _rasterise_geometry  # noqa: E402

FAST = settings(max_examples=150, deadline=None)
POLICIES = (PriorityFlatten("first"), PriorityFlatten("last"), NearestCentroidFlatten())


@st.composite
def placed_instances(draw):
    """An instance somewhere inside a larger image, and that image's shape."""
    mask = draw(masks(draw(shapes(20))))
    inst = Instance.from_mask(mask)
    h, w = inst.mask.shape
    y0, x0 = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    image = (y0 + h + draw(st.integers(0, 40)), x0 + w + draw(st.integers(0, 40)))
    return Instance(inst.mask, (y0, x0, y0 + h, x0 + w)), image


@FAST
@given(placed_instances())
def test_rle_agrees_with_pycocotools_and_round_trips(placed):
    inst, shape = placed
    full = inst.to_full(shape)
    rle = instance_to_rle(inst, shape)
    reference = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
    assert rle == {"size": list(shape), "counts": reference["counts"].decode("ascii")}
    assert rle_area(rle) == inst.area == int(mask_utils.area(reference))
    for encoded in (rle, uncompressed_rle(full), reference):
        back = rle_to_instance(encoded, class_id=1, score=0.5)
        assert back.bbox == inst.bbox and np.array_equal(back.mask, inst.mask)
        assert (back.class_id, back.score) == (1, 0.5)


@FAST
@given(shapes(20))
def test_an_rle_of_no_pixel_is_refused(shape):
    empty = mask_utils.encode(np.zeros(shape, np.uint8, order="F"))
    with pytest.raises(ValueError, match="no pixel"):
        rle_to_instance(empty)


@st.composite
def polygons(draw):
    """1-3 polygon parts of 3-7 vertices (quarter-pixel grid, on the image or its border; may cross themselves)."""
    h, w = draw(shapes(16, min_side=2))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(3, 7))
        xs = draw(st.lists(st.integers(0, 4 * w), min_size=n, max_size=n))
        ys = draw(st.lists(st.integers(0, 4 * h), min_size=n, max_size=n))
        parts.append(np.stack([xs, ys], axis=1) / 4.0)
    return parts, (h, w)


@FAST
@given(polygons())
def test_polygon_rasterisation_equals_pycocotools(drawn):
    parts, (h, w) = drawn
    rles = mask_utils.frPyObjects([p.ravel().tolist() for p in parts], h, w)
    expected = mask_utils.decode(rles).any(axis=-1)  # the union of the parts
    if not expected.any():
        with pytest.raises(ValueError, match="no pixel"):
            rasterize_polygon(parts, (h, w))
        return
    inst = rasterize_polygon(parts, (h, w), class_id=1, source_id="a7")
    assert np.array_equal(inst.to_full((h, w)), expected)
    assert len(inst.polygon) == len(parts) and all(np.array_equal(a, b) for a, b in zip(inst.polygon, parts))
    assert (inst.class_id, inst.source_id) == (1, "a7")


@settings(max_examples=100, deadline=None)
@given(shapes(12).flatmap(masks))
def test_traced_outline_is_valid_and_rasterises_to_the_mask(mask):
    inst = Instance.from_mask(mask)
    geom = instance_geometry(inst)
    assert geom.is_valid and geom.area == inst.area
    assert np.array_equal(_rasterise_geometry(geom, mask.shape), mask)


def _covering(instances, shape) -> np.ndarray:
    """Boolean (n, H, W): which instance covers which pixel."""
    return np.array([i.to_full(shape) for i in instances]).reshape(len(instances), *shape)


@FAST
@given(instance_sets(scores=True))
def test_every_flattened_pixel_belongs_to_an_instance_that_covered_it(s):
    cover = _covering(s, s.shape)
    union = cover.any(axis=0)
    for policy in POLICIES:
        flat = flatten(s, policy)
        labels = flat.labels.astype(np.int64)
        assert labels.shape == s.shape and labels.max(initial=0) <= len(s)
        ys, xs = np.nonzero(labels)
        assert cover[labels[ys, xs] - 1, ys, xs].all(), policy.name
        # lost: exactly the instances left without a pixel
        assert flat.lost == tuple(k for k in range(len(s)) if not (labels == k + 1).any())
        # pixels of an instance that kept some are never left empty; nothing outside the union is painted
        kept = [k for k in range(len(s)) if k not in flat.lost]
        assert not np.any(cover[kept].any(axis=0) & (labels == 0)) and not np.any(~union & (labels > 0))
        meta = flat.metadata()
        assert meta["flatten_policy"] == policy.name and meta["lost_instances"] == list(flat.lost)
        back = flat.to_instance_set()  # the survivors, in annotation order, each within its source
        assert len(back) == len(kept)
        for inst, k in zip(back, kept):
            assert (inst.class_id, inst.score, inst.source_id) == (s[k].class_id, s[k].score, s[k].source_id)
            assert np.array_equal(inst.to_full(s.shape), labels == k + 1)


@FAST
@given(instance_sets())
def test_priority_first_and_last_give_the_lowest_and_highest_covering_index(s):
    cover = _covering(s, s.shape)
    union = cover.any(axis=0)
    n = len(s)
    first = np.where(union, np.argmax(cover, axis=0) + 1, 0) if n else np.zeros(s.shape, int)
    last = np.where(union, n - np.argmax(cover[::-1], axis=0), 0) if n else np.zeros(s.shape, int)
    assert np.array_equal(flatten(s, PriorityFlatten("first")).labels, first)
    assert np.array_equal(flatten(s, PriorityFlatten("last")).labels, last)
    # priority-last loses exactly the instances that later ones cover entirely
    hidden = tuple(k for k in range(n) if not np.any(cover[k] & ~cover[k + 1 :].any(axis=0)))
    assert flatten(s, PriorityFlatten("last")).lost == hidden


@FAST
@given(instance_sets())
def test_without_overlaps_every_policy_gives_the_same_label_image(s):
    if s.n_overlapping:
        s = s.replace(instances=tuple(i for i, o in zip(s, s.overlapping()) if not o))
    results = [flatten(s, policy) for policy in POLICIES]
    for r in results:
        assert np.array_equal(r.labels, results[0].labels) and r.lost == ()
    assert set(np.unique(results[0].labels).tolist()) - {0} == set(range(1, len(s) + 1))
