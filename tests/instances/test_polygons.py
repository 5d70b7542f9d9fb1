import numpy as np
import pycocotools.mask as mask_utils
import pytest
import shapely

from cellbench.instances import Instance, instance_geometry, polygon_problem, rasterize_polygon, trace_outline


def _rect(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def test_rectangle_rasterises_to_its_pixels():
    inst = rasterize_polygon([_rect(2, 1, 5, 4)], (10, 10), class_id=0, source_id=9)
    assert inst.bbox == (1, 2, 4, 5) and inst.area == 9 and inst.source_id == 9
    assert len(inst.polygon) == 1


def test_multi_part_polygon_is_one_instance():
    inst = rasterize_polygon([_rect(0, 0, 2, 2), _rect(5, 5, 8, 6)], (10, 10))
    assert inst.area == 4 + 3
    assert inst.bbox == (0, 0, 6, 8)
    assert len(inst.polygon) == 2


def test_rasterisation_equals_pycocotools_on_the_full_image():
    poly = np.array([[3.2, 1.7], [11.9, 4.4], [8.1, 12.6], [2.5, 9.3]])
    inst = rasterize_polygon([poly], (15, 14))
    full = mask_utils.decode(mask_utils.frPyObjects([poly.ravel().tolist()], 15, 14))[..., 0].astype(bool)
    np.testing.assert_array_equal(inst.to_full((15, 14)), full)


@pytest.mark.parametrize("part, problem", [
    (np.array([[0, 0], [4, 4], [4, 0], [0, 4]], float), "self-intersecting"),
    (np.array([[0, 0], [11, 0], [11, 3]], float), "outside the 10 x 8 image"),
    (np.array([[0, -0.5], [3, 0], [3, 3]], float), "outside"),
    (np.array([[1, 1], [2, 2], [1, 1]], float), "fewer than 3 distinct vertices"),
    (np.array([[1, 1], [np.nan, 2], [3, 1]], float), "not finite"),
])
def test_polygon_problems(part, problem):
    assert problem in polygon_problem(part, (8, 10))


def test_polygon_on_the_border_is_fine():
    assert polygon_problem(_rect(0, 0, 10, 8), (8, 10)) is None


def _rasterise_geometry(geom, shape):
    full = np.zeros(shape, bool)
    for poly in getattr(geom, "geoms", [geom]):
        ring = np.asarray(poly.exterior.coords).ravel().tolist()
        part = mask_utils.decode(mask_utils.frPyObjects([ring], *shape))[..., 0].astype(bool)
        for hole in poly.interiors:
            hole_px = mask_utils.decode(mask_utils.frPyObjects([np.asarray(hole.coords).ravel().tolist()], *shape))
            part &= ~hole_px[..., 0].astype(bool)
        full |= part
    return full


def test_trace_outline_of_ring_has_a_hole():
    mask = np.ones((5, 5), bool)
    mask[2, 2] = False
    (exterior, holes), = trace_outline(mask)
    assert sorted(map(tuple, exterior.tolist())) == [(0, 0), (0, 5), (5, 0), (5, 5)]
    assert len(holes) == 1 and sorted(map(tuple, holes[0].tolist())) == [(2, 2), (2, 3), (3, 2), (3, 3)]


def test_diagonal_pixels_are_separate_polygons():
    polys = trace_outline(np.array([[1, 0], [0, 1]], bool))
    assert len(polys) == 2 and all(len(ext) == 4 and not holes for ext, holes in polys)


@pytest.mark.parametrize("seed", range(60))
def test_outline_geometry_reproduces_random_masks_exactly(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((11, 13)) < rng.uniform(0.2, 0.8)
    mask[5, 6] = True
    inst = Instance.from_mask(mask, offset=(0, 0))
    geom = instance_geometry(inst)
    assert geom.is_valid, shapely.is_valid_reason(geom)
    assert geom.area == mask.sum()
    np.testing.assert_array_equal(_rasterise_geometry(geom, mask.shape), mask)


def test_geometry_uses_annotated_polygon_when_present():
    inst = rasterize_polygon([_rect(0, 0, 2, 2), _rect(5, 5, 8, 6)], (10, 10))
    geom = instance_geometry(inst)
    assert geom.geom_type == "MultiPolygon" and geom.area == 7
