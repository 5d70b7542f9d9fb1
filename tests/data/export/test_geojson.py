"""QuPath GeoJSON: one Feature per instance, Polygon / MultiPolygon, holes, properties, exact areas."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import shape as geojson_shape

from cellbench.data.dataset import Dataset, Sample
from cellbench.data.export import to_geojson, write_dataset
from cellbench.instances import Instance, InstanceSet, PriorityFlatten, rasterize_polygon

SHAPE = (20, 20)


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows], bool)


CASES = {
    # name: (mask, offset, geometry type, number of polygons, holes per polygon)
    "rect": (_mask(["###", "###"]), (0, 0), "Polygon", [0]),
    "l_shape": (_mask(["#..", "#..", "###"]), (4, 1), "Polygon", [0]),
    "hole": (_mask(["####", "#..#", "#..#", "####"]), (1, 6), "Polygon", [1]),
    "two_parts": (_mask(["##..", "##.#", "##.."]), (8, 8), "MultiPolygon", [0, 0]),
    "diagonal": (_mask(["#.", ".#"]), (17, 17), "MultiPolygon", [0, 0]),
    "hole_touching_outside": (_mask(["###", "#.#", "##."]), (13, 2), "Polygon", [1]),
    "two_holes_touching": (_mask(["####", "#.##", "##.#", "####"]), (12, 12), "Polygon", [2]),
    "part_with_hole": (_mask(["###.#", "#.#..", "###.."]), (0, 14), "MultiPolygon", [1, 0]),
}


def _instances(scores: bool = False) -> InstanceSet:
    insts = [
        Instance.from_mask(m, offset=off, class_id=k % 2, score=(0.5 + k / 100) if scores else None)
        for k, (m, off, _, _) in enumerate(CASES.values())
    ]
    return InstanceSet(SHAPE, tuple(insts), classes=("cell", "soma"))


def _rasterise(geom, shape) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    return shapely.contains_xy(geom, xx, yy)


@pytest.fixture
def collection():
    s = _instances()
    # through JSON text, as QuPath would read it
    return s, json.loads(json.dumps(to_geojson(s)))


def test_feature_collection_one_feature_per_instance(collection):
    s, fc = collection
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == len(s)
    assert all(f["type"] == "Feature" for f in fc["features"])
    assert "cellbench" not in fc


def test_geometry_types_and_holes(collection):
    _, fc = collection
    for (case, (_, _, gtype, holes)), feature in zip(CASES.items(), fc["features"]):
        geometry = feature["geometry"]
        assert geometry["type"] == gtype, case
        polygons = [geometry["coordinates"]] if gtype == "Polygon" else geometry["coordinates"]
        assert [len(rings) - 1 for rings in polygons] == holes, case
        for rings in polygons:
            for ring in rings:
                assert ring[0] == ring[-1], case  # GeoJSON rings are closed


def test_areas_equal_pixel_counts_and_pixels_match(collection):
    s, fc = collection
    for case, inst, feature in zip(CASES, s, fc["features"]):
        geom = geojson_shape(feature["geometry"])
        assert geom.is_valid, (case, shapely.is_valid_reason(geom))
        assert geom.area == inst.area, case
        assert np.array_equal(_rasterise(geom, SHAPE), inst.to_full(SHAPE)), case


def test_properties(collection):
    s, fc = collection
    for k, (inst, feature) in enumerate(zip(s, fc["features"])):
        props = feature["properties"]
        assert props["objectType"] == "annotation"
        assert props["name"] == f"{k + 1:04d}"
        assert props["classification"]["name"] == s.classes[inst.class_id]
        color = props["classification"]["color"]
        assert len(color) == 3 and all(0 <= c <= 255 for c in color)
        assert "measurements" not in props


def test_detection_object_type_and_scores():
    s = _instances(scores=True)
    fc = to_geojson(s, object_type="detection", extra={"image": "x"})
    assert fc["cellbench"] == {"image": "x"}
    for inst, feature in zip(s, fc["features"]):
        assert feature["properties"]["objectType"] == "detection"
        assert feature["properties"]["measurements"] == {"score": inst.score}


def test_annotated_polygon_is_kept_as_drawn():
    square = np.array([[1.5, 1.5], [6.5, 1.5], [6.5, 5.25], [1.5, 5.25]])
    bud = np.array([[10, 10], [14, 10], [14, 13]], float)
    one = rasterize_polygon([square], SHAPE)
    two = rasterize_polygon([square, bud], SHAPE, class_id=1)
    fc = to_geojson(InstanceSet(SHAPE, (one, two), classes=("cell", "soma")))
    g1 = geojson_shape(fc["features"][0]["geometry"])
    g2 = geojson_shape(fc["features"][1]["geometry"])
    assert fc["features"][0]["geometry"]["type"] == "Polygon"
    assert g1.equals(shapely.Polygon(square))
    assert g1.area == pytest.approx(5 * 3.75)
    assert fc["features"][1]["geometry"]["type"] == "MultiPolygon"
    assert g2.area == pytest.approx(5 * 3.75 + 6)
    assert fc["features"][1]["properties"]["classification"]["name"] == "soma"


def test_empty_set_gives_empty_collection():
    assert to_geojson(InstanceSet(SHAPE)) == {"type": "FeatureCollection", "features": []}


def test_write_dataset_geojson(tmp_path):
    s = _instances(scores=True)
    ds = Dataset(layout="hand", root=tmp_path, samples=(Sample("img", s),), classes=s.classes)
    out = tmp_path / "out"
    manifest = write_dataset(ds, out, "geojson")
    assert manifest["files"] == ["geojson/img.geojson"]
    fc = json.loads((out / "geojson" / "img.geojson").read_text())
    assert fc["cellbench"] == {"image": "img", "flatten": None}
    assert len(fc["features"]) == len(s)
    for inst, feature in zip(s, fc["features"]):
        assert geojson_shape(feature["geometry"]).area == inst.area
        assert feature["properties"]["measurements"]["score"] == inst.score


def test_write_dataset_geojson_flattened(tmp_path):
    a = Instance(np.ones((2, 3), bool), (0, 0, 2, 3), score=0.9)
    b = Instance(np.ones((2, 3), bool), (0, 2, 2, 5), score=0.8)
    s = InstanceSet((3, 6), (a, b))
    ds = Dataset(layout="hand", root=tmp_path, samples=(Sample("img", s),), classes=s.classes)
    out = tmp_path / "out"
    write_dataset(ds, out, "geojson", policy=PriorityFlatten("first"))
    fc = json.loads((out / "geojson" / "img.geojson").read_text())
    assert fc["cellbench"]["flatten"]["flatten_policy"] == "priority-first"
    areas = [geojson_shape(f["geometry"]).area for f in fc["features"]]
    assert areas == [6, 4]
    assert [f["properties"]["measurements"]["score"] for f in fc["features"]] == [0.9, 0.8]
