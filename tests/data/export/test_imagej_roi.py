"""ImageJ ROI zip: one ROI per instance, in order; composite ROIs for holes and parts; exact pixels."""

from __future__ import annotations

import numpy as np
import pytest
import roifile
import shapely

from cellbench.data.dataset import Dataset, Sample
from cellbench.data.export import write_dataset, write_roi_zip
from cellbench.data.export.imagej_roi import instance_rois
from cellbench.instances import Instance, InstanceSet, rasterize_polygon

SHAPE = (20, 20)


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows], bool)


RECT = _mask(["###", "###"])
L_SHAPE = _mask(["#..", "#..", "###"])
HOLE = _mask(["####", "#..#", "#..#", "####"])
TWO_PARTS = _mask(["##..", "##.#", "##.."])
DIAGONAL = _mask(["#.", ".#"])  # touch only at a corner: two parts under 4-connectivity
HOLE_TOUCHING_OUTSIDE = _mask(["###", "#.#", "##."])  # hole meets the background at one corner
TWO_HOLES_TOUCHING = _mask(["####", "#.##", "##.#", "####"])
POLYGON = np.array([[1.25, 1.5], [6.75, 1.25], [7.5, 5.5], [2.25, 6.75]])  # float32-exact vertices

MASK_CASES = {
    "rect": (RECT, (0, 0)),
    "l_shape": (L_SHAPE, (4, 1)),
    "hole": (HOLE, (1, 6)),
    "two_parts": (TWO_PARTS, (8, 8)),
    "diagonal": (DIAGONAL, (17, 17)),
    "hole_touching_outside": (HOLE_TOUCHING_OUTSIDE, (13, 2)),
    "two_holes_touching": (TWO_HOLES_TOUCHING, (12, 12)),
}
COMPOSITE = {"hole", "two_parts", "diagonal", "hole_touching_outside", "two_holes_touching"}


def _instances() -> InstanceSet:
    insts = [Instance.from_mask(m, offset=off, class_id=k % 2) for k, (m, off) in enumerate(MASK_CASES.values())]
    return InstanceSet(SHAPE, tuple(insts), classes=("cell", "soma"))


def _rasterise(rings: list[np.ndarray], shape) -> np.ndarray:
    """Even-odd fill of the rings, sampled at pixel centres (pixel (r, c) spans [c, c+1] x [r, r+1])."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    inside = np.zeros(shape, bool)
    for ring in rings:
        inside ^= shapely.contains_xy(shapely.Polygon(ring), xx, yy)
    return inside


def _rings(roi: roifile.ImagejRoi) -> list[np.ndarray]:
    return [np.asarray(c, dtype=np.float64) for c in roi.coordinates(multi=True)]


@pytest.fixture
def roi_zip(tmp_path):
    s = _instances()
    path = tmp_path / "rois.zip"
    write_roi_zip(path, s)
    return s, roifile.roiread(path)


def test_one_roi_per_instance_in_order_with_names(roi_zip):
    s, rois = roi_zip
    assert isinstance(rois, list)
    assert len(rois) == len(s) == len(MASK_CASES)
    classes = ["cell", "soma"]
    assert [r.name for r in rois] == [f"{k + 1:04d}-{classes[k % 2]}" for k in range(len(s))]


def test_roi_types(roi_zip):
    _, rois = roi_zip
    for case, roi in zip(MASK_CASES, rois):
        if case in COMPOSITE:
            assert roi.composite, case
            assert roi.multi_coordinates is not None
        else:
            assert not roi.composite, case
            assert roi.roitype == roifile.ROI_TYPE.TRACED, case
            assert roi.subpixel_coordinates is None


def test_composite_ring_counts(roi_zip):
    _, rois = roi_zip
    counts = {case: len(_rings(roi)) for case, roi in zip(MASK_CASES, rois)}
    assert counts == {
        "rect": 1,
        "l_shape": 1,
        "hole": 2,
        "two_parts": 2,
        "diagonal": 2,
        "hole_touching_outside": 2,
        "two_holes_touching": 3,
    }


def test_rasterised_rois_reproduce_masks(roi_zip):
    s, rois = roi_zip
    for case, inst, roi in zip(MASK_CASES, s, rois):
        got = _rasterise(_rings(roi), SHAPE)
        assert np.array_equal(got, inst.to_full(SHAPE)), case


def test_roi_areas_equal_pixel_counts(roi_zip):
    """Ring areas, exteriors minus holes, equal the pixel count."""
    s, rois = roi_zip
    for case, inst, roi in zip(MASK_CASES, s, rois):
        rings = _rings(roi)
        polys = [shapely.Polygon(r) for r in rings]
        assert all(p.is_valid for p in polys), case
        # a ring lying inside an odd number of other rings is a hole
        total = 0.0
        for k, p in enumerate(polys):
            depth = sum(q.covers(p) for j, q in enumerate(polys) if j != k)
            total += p.area if depth % 2 == 0 else -p.area
        assert total == inst.area, case


def test_traced_roi_coordinates_are_pixel_corners(roi_zip):
    s, rois = roi_zip
    rect = rois[0]
    assert sorted(map(tuple, rect.coordinates().tolist())) == [(0, 0), (0, 2), (3, 0), (3, 2)]
    assert (rect.left, rect.top) == (0, 0)
    l_roi = rois[1]
    assert l_roi.left == 1 and l_roi.top == 4
    assert sorted(map(tuple, l_roi.coordinates().tolist())) == [(1, 4), (1, 7), (2, 4), (2, 6), (4, 6), (4, 7)]


def test_composite_roi_bounds(roi_zip):
    s, rois = roi_zip
    for case, inst, roi in zip(MASK_CASES, s, rois):
        if case in COMPOSITE:
            y0, x0, y1, x1 = inst.bbox
            assert (roi.left, roi.top, roi.right, roi.bottom) == (x0, y0, x1, y1), case


def test_annotated_polygon_becomes_subpixel_polygon_roi(tmp_path):
    inst = rasterize_polygon([POLYGON], SHAPE)
    path = tmp_path / "p.zip"
    write_roi_zip(path, InstanceSet(SHAPE, (inst,)))
    (roi,) = roifile.roiread(path)
    assert roi.roitype == roifile.ROI_TYPE.POLYGON
    assert roi.subpixel_coordinates is not None
    coords = np.asarray(roi.coordinates(), dtype=np.float64)
    assert np.array_equal(coords, POLYGON)
    # the same polygon rasterised the COCO way gives the instance pixels back
    back = rasterize_polygon([coords], SHAPE)
    assert back.bbox == inst.bbox
    assert np.array_equal(back.mask, inst.mask)


def test_multi_part_polygon_annotation_is_one_composite_roi(tmp_path):
    parts = [np.array([[1, 1], [4, 1], [4, 4], [1, 4]], float), np.array([[8.5, 8], [12, 8], [12, 11.5]], float)]
    inst = rasterize_polygon(parts, SHAPE)
    path = tmp_path / "p.zip"
    write_roi_zip(path, InstanceSet(SHAPE, (inst,)))
    rois = roifile.roiread(path)
    assert len(rois) == 1
    (roi,) = rois
    assert roi.composite
    rings = _rings(roi)
    assert len(rings) == 2
    total = sum(shapely.Polygon(r).area for r in rings)
    assert total == pytest.approx(sum(shapely.Polygon(p).area for p in parts))


def test_instance_rois_in_memory_matches_file(roi_zip):
    s, rois = roi_zip
    direct = instance_rois(s)
    assert [r.name for r in direct] == [r.name for r in rois]


def test_empty_instance_set_writes_no_zip(tmp_path):
    path = tmp_path / "none.zip"
    write_roi_zip(path, InstanceSet(SHAPE))
    assert not path.exists()


def test_write_dataset_roi(tmp_path):
    s = _instances()
    samples = (Sample("with", s), Sample("empty", InstanceSet(SHAPE)))
    ds = Dataset(layout="hand", root=tmp_path, samples=samples, classes=s.classes)
    out = tmp_path / "out"
    manifest = write_dataset(ds, out, "roi")
    assert manifest["files"] == ["rois/with.zip"]
    assert manifest["n_instances"] == len(s)
    assert manifest["flatten"] is None
    rois = roifile.roiread(out / "rois" / "with.zip")
    assert len(rois) == len(s)
    for inst, roi in zip(s, rois):
        assert np.array_equal(_rasterise(_rings(roi), SHAPE), inst.to_full(SHAPE))
    assert not (out / "rois" / "empty.zip").exists()
