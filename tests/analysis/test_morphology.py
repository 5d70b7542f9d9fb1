"""Morphology against scikit-image regionprops and hand-computed shapes (disc, square, ellipse), overlaps whole."""

from __future__ import annotations

import csv
from dataclasses import astuple

import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon
from skimage.measure import label, perimeter, regionprops

from cellbench.analysis import (
    COLUMNS,
    boundary_covariance,
    measure_instances,
    measure_mask,
    measure_masks,
    morphology_table,
    write_morphology_csv,
)
from cellbench.instances import Instance, InstanceSet


def _disc(radius: float, size: int = 101) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[disk((size // 2, size // 2), radius)] = True
    return m


def _ellipse(a: float, b: float, angle: float = 0.0) -> np.ndarray:
    """Filled ellipse with semi-axes a (along columns at angle 0) and b."""
    m = np.zeros((160, 160), bool)
    m[ellipse(80, 80, b, a, rotation=angle)] = True
    return m


def _arc_length_elongation(a: float, b: float) -> float:
    """var_minor / var_major of points spread uniformly along the ellipse x = a cos t, y = b sin t.

    The arc-length element is s(t) = sqrt(a^2 sin^2 t + b^2 cos^2 t); the mean is 0 by symmetry, so
    var_x = int a^2 cos^2 t s dt / int s dt and var_y likewise. Spread uniformly in t instead (s = 1),
    the ratio would be (b / a)^2.
    """
    t = np.linspace(0.0, 2 * np.pi, 200_001)
    s = np.sqrt(a**2 * np.sin(t) ** 2 + b**2 * np.cos(t) ** 2)
    return float(np.trapezoid(b**2 * np.sin(t) ** 2 * s, t) / np.trapezoid(a**2 * np.cos(t) ** 2 * s, t))


def test_disc():
    m = measure_mask(_disc(30))
    assert m.eccentricity < 0.02
    assert m.solidity > 0.98
    assert m.convexity == pytest.approx(1.0, abs=0.01)
    assert m.elongation == pytest.approx(1.0, abs=0.01)
    assert m.area == pytest.approx(np.pi * 30**2, rel=0.01)
    assert m.equivalent_diameter == pytest.approx(np.sqrt(4 * m.area / np.pi))
    assert m.perimeter == pytest.approx(2 * np.pi * 30, rel=0.04)  # regionprops' estimator reads ~3 % long here


def test_square_exact():
    mask = np.zeros((30, 30), bool)
    mask[5:25, 5:25] = True
    m = measure_mask(mask)
    assert (m.area, m.eccentricity, m.solidity, m.convexity) == (400, 0.0, 1.0, 1.0)
    assert m.elongation == pytest.approx(1.0, abs=1e-9)  # the square's symmetry makes the covariance isotropic
    assert m.equivalent_diameter == pytest.approx(np.sqrt(1600 / np.pi))


def test_rectangle_boundary_covariance_by_hand():
    # A w x h rectangle's outline, marching squares at 0.5 of the padded mask: a w x h rectangle of corners
    # (cut diagonally at the 4 corners). For a rectangle outline of sides W (x) and H (y), points spread
    # uniformly along it have var_x = W^2 (W + 3H) / (12 (W + H)); with the cut corners, within 2 %.
    w, h = 40, 10
    mask = np.ones((h, w), bool)
    cov = boundary_covariance(mask)
    var_x = w**2 * (w + 3 * h) / (12 * (w + h))
    var_y = h**2 * (h + 3 * w) / (12 * (w + h))
    assert cov[1, 1] == pytest.approx(var_x, rel=0.02)
    assert cov[0, 0] == pytest.approx(var_y, rel=0.02)
    assert abs(cov[0, 1]) < 1e-9
    assert measure_mask(mask).elongation == pytest.approx(var_y / var_x, rel=0.03)


@pytest.mark.parametrize("a,b", [(40, 20), (50, 15), (30, 27)])
def test_ellipse_known_axes(a, b):
    m = measure_mask(_ellipse(a, b))
    assert m.eccentricity == pytest.approx(np.sqrt(1 - (b / a) ** 2), abs=0.01)
    expected = _arc_length_elongation(a, b)
    assert m.elongation == pytest.approx(expected, abs=0.015)
    # direction: 1 for round, smaller when elongated; bracketed by the parametric value (b/a)^2 and b/a
    assert (b / a) ** 2 - 0.01 < m.elongation < b / a


def test_elongation_rotation_invariant():
    straight = measure_mask(_ellipse(45, 18)).elongation
    turned = measure_mask(_ellipse(45, 18, angle=np.pi / 5)).elongation
    assert turned == pytest.approx(straight, abs=0.02)


def test_matches_regionprops_on_irregular_shapes():
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = np.zeros((120, 120), bool)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radii = rng.uniform(15, 45, 9)
        img[polygon(60 + radii * np.sin(angles), 60 + radii * np.cos(angles), img.shape)] = True
        img = label(img) == 1  # one connected piece
        ref = regionprops(img.astype(np.uint8))[0]
        m = measure_mask(img[ref.slice])  # a tight crop: the object touches the crop edge
        assert m.area == ref.area
        assert m.perimeter == pytest.approx(ref.perimeter)
        assert m.eccentricity == pytest.approx(ref.eccentricity)
        assert m.solidity == pytest.approx(ref.solidity)
        assert m.equivalent_diameter == pytest.approx(ref.equivalent_diameter_area)
        assert m.convexity == pytest.approx(perimeter(ref.image_convex) / ref.perimeter)
        assert 0 < m.convexity <= 1.0 + 1e-9


def test_concave_shape_has_lower_convexity_and_solidity():
    c = np.zeros((60, 60), bool)
    c[10:50, 10:50] = True
    c[20:40, 30:50] = False  # a C shape
    m = measure_mask(c)
    assert m.solidity < 0.85 and m.convexity < 0.9


def test_overlapping_instances_measured_whole():
    a, b = _disc(20, 80), np.roll(_disc(20, 80), 15, axis=1)
    assert (a & b).sum() > 300
    s = InstanceSet(shape=(80, 80), instances=(Instance.from_mask(a), Instance.from_mask(b, class_id=1)),
                    classes=("x", "y"))
    recs = measure_instances(s, image="im")
    alone = [measure_mask(a), measure_mask(b)]
    for rec, ref in zip(recs, alone):  # the same up to rounding (the crops start at other offsets)
        assert astuple(rec.shape) == pytest.approx(astuple(ref), rel=1e-9)
    assert [r.class_name for r in recs] == ["x", "y"]
    assert recs[0].shape.area == recs[1].shape.area == a.sum()
    # a flattened label image would have cut the first disc
    flat = np.where(b, 2, np.where(a, 1, 0))
    assert (flat == 1).sum() < recs[0].shape.area


def test_single_pixel_and_empty_image():
    m = measure_mask(np.ones((1, 1), bool))
    assert m.area == 1 and m.elongation == pytest.approx(1.0)
    assert morphology_table({"empty": InstanceSet(shape=(5, 5))}) == ()
    with pytest.raises(ValueError):
        measure_mask(np.zeros((3, 3), bool))


def test_table_rows_and_csv(tmp_path):
    labels = np.zeros((40, 40), np.uint16)
    labels[2:12, 2:22] = 7
    labels[20:35, 20:35] = 9
    s = InstanceSet.from_label_image(labels)
    recs = morphology_table([("img", s)], source="prediction")
    assert [r.source_id for r in recs] == [7, 9]
    assert recs[1].centroid_row == pytest.approx(27.0)
    path = write_morphology_csv(recs, tmp_path / "sub" / "m.csv")
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert tuple(rows[0]) == COLUMNS
    assert [r["instance"] for r in rows] == ["0", "1"]
    assert rows[0]["source"] == "prediction" and rows[0]["class"] == "cell"
    assert float(rows[0]["area"]) == 200 and float(rows[1]["solidity"]) == 1.0
    assert not list(tmp_path.glob("sub/.*"))  # no partial file left


def _random_masks(rng: np.random.Generator) -> list[np.ndarray]:
    """Tight and loose crops: one pixel, lines, blobs touching the crop's edge, masks with holes, repeats."""
    masks = [np.ones((1, 1), bool), np.ones((1, 5), bool), np.ones((4, 1), bool), np.eye(3, dtype=bool)]
    for _ in range(40):
        h, w = rng.integers(1, 12, size=2)
        m = rng.random((h, w)) < rng.uniform(0.3, 0.9)
        if m.any():
            masks.append(m)  # often touches every edge, often in several pieces
    ring = np.ones((7, 7), bool)
    ring[2:5, 2:5] = False  # a hole
    masks += [ring, np.pad(ring, 2), _disc(6, 15)]
    return masks + [m.copy() for m in masks[::3]]  # equal masks in other arrays


def test_measure_masks_equals_measure_mask_exactly():
    masks = _random_masks(np.random.default_rng(0))
    memo: dict = {}
    fast = measure_masks(masks, memo=memo)
    assert fast == [measure_mask(m) for m in masks]  # dataclass equality: every float to the last bit
    assert len(memo) < len(masks)
    # A shared memo hands a mask seen before its first record, so later calls measure nothing new.
    again = measure_masks([m.copy() for m in masks], memo=memo)
    assert all(a is b for a, b in zip(again, fast))


def test_measure_instances_with_a_memo_gives_the_same_records():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, size=(30, 30)).astype(np.uint8)
    labels[10:20, 10:20] = 7  # one larger block among many small fragments
    s = InstanceSet.from_label_image(labels)
    memo: dict = {}
    assert measure_instances(s, image="a", memo=memo) == measure_instances(s, image="a")
    assert len(memo) <= len(s)
