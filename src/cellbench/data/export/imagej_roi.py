"""ImageJ / Fiji ROI zip: one ROI per instance, readable by the ROI Manager.

A one-piece instance without holes is a polygon ROI: a traced ROI (integer
pixel-corner coordinates, what ImageJ's wand makes) from a mask, or a
sub-pixel polygon from an annotated outline. A multi-part instance or one with
holes is a composite (shape) ROI, so it stays ONE ROI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import roifile
import shapely

from cellbench.instances import InstanceSet, instance_geometry

__all__ = ["instance_rois", "write_roi_zip"]

_MOVETO, _LINETO, _CLOSE = 0, 1, 4


def _polygons(geom) -> list[shapely.Polygon]:
    return list(geom.geoms) if hasattr(geom, "geoms") else [geom]


def _ring(coords) -> np.ndarray:
    return np.asarray(coords, dtype=np.float64)[:-1]  # shapely repeats the first vertex


def instance_rois(instances: InstanceSet) -> list[roifile.ImagejRoi]:
    """One ImageJ ROI per instance, named ``<index>-<class>``, in instance order."""
    rois = []
    for k, inst in enumerate(instances):
        name = f"{k + 1:04d}-{instances.classes[inst.class_id]}"
        polys = _polygons(instance_geometry(inst))
        if len(polys) == 1 and not polys[0].interiors:
            pts = _ring(polys[0].exterior.coords)
            integral = np.array_equal(pts, np.round(pts))
            roi = roifile.ImagejRoi.frompoints(pts.astype(np.int32) if integral else pts, name=name)
            roi.roitype = roifile.ROI_TYPE.TRACED if integral else roifile.ROI_TYPE.POLYGON
        else:
            roi = _composite(polys, name)
        rois.append(roi)
    return rois


def _composite(polys: list[shapely.Polygon], name: str) -> roifile.ImagejRoi:
    path: list[float] = []
    for poly in polys:
        for ring in (poly.exterior, *poly.interiors):
            pts = _ring(ring.coords)
            path += [_MOVETO, *pts[0]]
            for x, y in pts[1:]:
                path += [_LINETO, x, y]
            path.append(_CLOSE)
    x0, y0, x1, y1 = shapely.MultiPolygon(polys).bounds
    roi = roifile.ImagejRoi()
    roi.roitype = roifile.ROI_TYPE.RECT
    roi.name = name
    roi.left, roi.top = int(np.floor(x0)), int(np.floor(y0))
    roi.right, roi.bottom = int(np.ceil(x1)), int(np.ceil(y1))
    roi.multi_coordinates = np.asarray(path, dtype=np.float32)
    roi.shape_roi_size = len(path)
    return roi


def write_roi_zip(path: str | Path, instances: InstanceSet) -> None:
    """Write all instances of one image to an ImageJ ROI zip."""
    rois = instance_rois(instances)
    if rois:
        roifile.roiwrite(path, rois, mode="w")
