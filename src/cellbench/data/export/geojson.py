"""GeoJSON polygons that QuPath imports (File > Import objects, or drag and drop).

One FeatureCollection per image; each instance is one Feature (Polygon, or
MultiPolygon for several parts) with QuPath's ``objectType``,
``classification`` and ``measurements`` properties. Coordinates are pixels
with pixel (r, c) spanning [c, c+1] x [r, r+1], as in QuPath.
"""

from __future__ import annotations

import colorsys
from typing import Literal

from shapely.geometry import mapping

from cellbench.instances import InstanceSet, instance_geometry

__all__ = ["to_geojson"]


def _color(k: int) -> list[int]:
    r, g, b = colorsys.hsv_to_rgb((0.61803398875 * k) % 1.0, 0.8, 0.95)
    return [round(255 * r), round(255 * g), round(255 * b)]


def to_geojson(
    instances: InstanceSet,
    *,
    object_type: Literal["annotation", "detection"] = "annotation",
    extra: dict | None = None,
) -> dict:
    """A GeoJSON FeatureCollection of the instances (``extra`` goes in a ``cellbench`` member)."""
    features = []
    for k, inst in enumerate(instances):
        cls = instances.classes[inst.class_id]
        props: dict = {
            "objectType": object_type,
            "name": f"{k + 1:04d}",
            "classification": {"name": cls, "color": _color(inst.class_id)},
            "isLocked": False,
        }
        if inst.score is not None:
            props["measurements"] = {"score": inst.score}
        geometry = mapping(instance_geometry(inst))
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    collection = {"type": "FeatureCollection", "features": features}
    if extra:
        collection["cellbench"] = extra
    return collection
