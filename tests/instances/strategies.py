"""Hypothesis strategies for the property tests: small masks, overlapping instance sets, label-image pairs.

Masks are built from a few rectangles (long runs, holes where they cross) and
sparse noise (single pixels, diagonal contacts), so both typical cell shapes
and awkward corner cases come up.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from cellbench.instances import Instance, InstanceSet  # noqa: E402


@st.composite
def masks(draw, shape: tuple[int, int], *, nonempty: bool = True) -> np.ndarray:
    """A boolean mask of ``shape``: rectangles toggled on top of each other, plus sparse noise."""
    h, w = shape
    mask = np.zeros(shape, bool)
    for _ in range(draw(st.integers(0, 3))):
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        mask[y0:y1, x0:x1] ^= True
    if draw(st.booleans()):
        mask ^= draw(hnp.arrays(bool, shape, elements=st.booleans(), fill=st.just(False)))
    if nonempty and not mask.any():
        mask[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = True
    return mask


def shapes(max_side: int = 16, min_side: int = 1):
    return st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side))


@st.composite
def instance_sets(draw, *, shape: tuple[int, int] | None = None, max_side: int = 14, max_instances: int = 6,
                  scores: bool = False) -> InstanceSet:
    """Instances of one image (of ``shape``, or drawn) that may overlap, with classes (and scores)."""
    shape = shape or draw(shapes(max_side, min_side=2))
    n = draw(st.integers(0, max_instances))
    found = []
    for _ in range(n):
        score = draw(st.sampled_from([0.1, 0.5, 0.9, 0.95])) if scores else None
        found.append(Instance.from_mask(draw(masks(shape)), class_id=draw(st.integers(0, 1)), score=score))
    return InstanceSet(shape=shape, instances=tuple(found), classes=("a", "b"))


@st.composite
def label_images(draw, shape: tuple[int, int], *, max_ids: int = 6) -> np.ndarray:
    """A label image: up to ``max_ids`` masks painted in order (later ones cover earlier ones), ids with gaps."""
    labels = np.zeros(shape, np.int32)
    ids = draw(st.lists(st.integers(1, 50), max_size=max_ids, unique=True))
    for i in ids:
        labels[draw(masks(shape))] = i
    return labels


@st.composite
def label_pairs(draw, *, max_side: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and a prediction near it: shifted, with some ids dropped and some objects added."""
    shape = draw(shapes(max_side, min_side=2))
    gt = draw(label_images(shape))
    dy, dx = draw(st.integers(-2, 2)), draw(st.integers(-2, 2))
    pred = np.roll(gt, (dy, dx), axis=(0, 1)) * 3  # new ids, gaps kept
    for i in draw(st.lists(st.sampled_from(sorted(set(np.unique(pred).tolist()) - {0}) or [0]), max_size=2)):
        pred[pred == i] = 0
    extra = draw(label_images(shape, max_ids=2))
    pred = np.where(extra > 0, extra + 1000, pred)
    return gt, pred
