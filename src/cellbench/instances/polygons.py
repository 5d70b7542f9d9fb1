"""Polygons <-> instance masks.

Coordinates follow COCO, ImageJ and QuPath: ``x, y`` with pixel ``(r, c)``
spanning ``[c, c+1] x [r, r+1]``. Rasterisation is pycocotools' own (what COCO
tools do, pixel for pixel); its RLE is expanded over the bounding box only. Outlines of masks are traced
along pixel edges, so rasterising a traced outline gives back the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pycocotools.mask as mask_utils

from cellbench.instances.instance import Instance
from cellbench.instances.rle import rle_to_instance

if TYPE_CHECKING:
    import shapely

# shapely is imported by the three functions that use it: commands that never meet a polygon
# (`cellbench evaluate` on label images) should not pay for its import.

__all__ = [
    "polygon_problem",
    "rasterize_polygon",
    "trace_outline",
    "instance_geometry",
]


def polygon_problem(part: np.ndarray, shape: tuple[int, int]) -> str | None:
    """Describe what is wrong with one polygon part, or None when it is fine.

    A vertex may lie on the image border (``x == width``) but not beyond it;
    a ring must have 3 distinct vertices and must not cross itself.

    >>> polygon_problem(np.array([[0, 0], [4, 4], [4, 0], [0, 4]]), (10, 10))
    'polygon is self-intersecting (Self-intersection[2 2])'
    """
    h, w = shape
    if part.ndim != 2 or part.shape[1] != 2 or not np.isfinite(part).all():
        return "polygon coordinates are not finite x, y pairs"
    if len(np.unique(part, axis=0)) < 3:
        return f"polygon has fewer than 3 distinct vertices ({len(part)} given)"
    outside = (part[:, 0] < 0) | (part[:, 0] > w) | (part[:, 1] < 0) | (part[:, 1] > h)
    if outside.any():
        x, y = part[np.argmax(outside)]
        return f"polygon vertex ({x:g}, {y:g}) lies outside the {w} x {h} image"
    import shapely

    ring = shapely.Polygon(part)
    if not ring.is_valid:
        reason = shapely.is_valid_reason(ring)
        if "Self-intersection" in reason or "Ring Self-intersection" in reason:
            return f"polygon is self-intersecting ({reason})"
        return f"polygon is invalid ({reason})"
    return None


def rasterize_polygon(parts: Sequence[np.ndarray], shape: tuple[int, int], **fields) -> Instance:
    """Rasterise the parts of one annotation (their union) into one :class:`Instance`.

    Raises ``ValueError`` when the polygon covers no pixel.

    >>> square = np.array([[1, 1], [3, 1], [3, 3], [1, 3]], float)
    >>> rasterize_polygon([square], (5, 5)).bbox
    (1, 1, 3, 3)
    """
    h, w = shape
    rles = mask_utils.frPyObjects([np.asarray(p, dtype=np.float64).ravel().tolist() for p in parts], h, w)
    merged = mask_utils.merge(rles) if len(rles) > 1 else rles[0]
    polygon = tuple(np.asarray(p, dtype=np.float64) for p in parts)
    return rle_to_instance(merged, polygon=polygon, **fields)


def trace_outline(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Polygons along the pixel edges of a boolean mask: ``[(exterior, [holes...]), ...]``.

    Each ring is an ``(n, 2)`` int array of ``x, y`` corner coordinates, not
    closed (first vertex not repeated), without collinear vertices. Pixels that
    touch only diagonally end up in different polygons (4-connectivity), so the
    result is a valid (multi)polygon whose rasterisation is exactly ``mask``.

    >>> trace_outline(np.ones((2, 3), bool))[0][0].tolist()
    [[0, 0], [0, 2], [3, 2], [3, 0]]
    """
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    # Directed edges between pixel corners, foreground on their left, as rows
    # (x, y, direction) with directions 0:+x 1:+y 2:-x 3:-y. Padded row/column
    # i is image row/column i - 1, so the boundary between padded rows i and
    # i + 1 lies at corner row y = i.
    i, pc = np.nonzero(padded[1:, :] != padded[:-1, :])
    fg_above = padded[i, pc]
    horizontal = np.stack([np.where(fg_above, pc - 1, pc), i, np.where(fg_above, 0, 2)], axis=1)
    pr, j = np.nonzero(padded[:, 1:] != padded[:, :-1])
    fg_left = padded[pr, j]
    vertical = np.stack([j, np.where(fg_left, pr, pr - 1), np.where(fg_left, 3, 1)], axis=1)
    return _link_rings(np.concatenate([horizontal, vertical]))


_STEP = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _link_rings(edges: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    elist = edges.tolist()
    outgoing: dict[tuple[int, int], list[int]] = {}
    for k, (x, y, _) in enumerate(elist):
        outgoing.setdefault((x, y), []).append(k)
    used = [False] * len(elist)
    exteriors: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    for start in range(len(elist)):
        if used[start]:
            continue
        ring = []
        k = start
        while not used[k]:
            used[k] = True
            x, y, d = elist[k]
            ring.append(elist[k])
            nxt = (x + _STEP[d][0], y + _STEP[d][1])
            choices = [j for j in outgoing[nxt] if not used[j]]
            if not choices:
                break
            if len(choices) > 1:  # saddle: turn left to keep diagonal pixels apart
                left = (d + 3) % 4
                choices = [j for j in choices if elist[j][2] == left] or choices
            k = choices[0]
        for loop in _split_touching(ring):
            loop_arr = np.array(loop, dtype=np.int64)
            corner = loop_arr[:, 2] != np.roll(loop_arr[:, 2], 1)  # drop vertices inside straight runs
            pts = loop_arr[corner, :2]
            area2 = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
            (exteriors if area2 < 0 else holes).append(pts)
    if not holes:
        return [(ext, []) for ext in exteriors]
    import shapely

    shells = [shapely.Polygon(ext) for ext in exteriors]
    assigned: list[list[np.ndarray]] = [[] for _ in exteriors]
    for hole in holes:
        ring = shapely.Polygon(hole)
        inside = [k for k, shell in enumerate(shells) if shell.covers(ring)]
        if inside:  # the innermost shell around the hole owns it
            assigned[min(inside, key=lambda k: shells[k].area)].append(hole)
    return list(zip(exteriors, assigned))


def _split_touching(ring: list[list[int]]) -> list[list[list[int]]]:
    """Split a closed edge walk that passes a corner twice into simple loops.

    A region and an 8-connected background pocket meet at a single corner; OGC
    wants that as a shell plus a hole touching it, not one self-touching ring.
    """
    loops = []
    stack: list[list[int]] = []
    seen: dict[tuple[int, int], int] = {}
    for edge in ring:
        key = (edge[0], edge[1])
        if key in seen:
            start = seen[key]
            loop = stack[start:]
            del stack[start:]
            for e in loop:
                seen.pop((e[0], e[1]), None)
            loops.append(loop)
        seen[key] = len(stack)
        stack.append(edge)
    loops.append(stack)
    return loops


def instance_geometry(instance: Instance) -> shapely.Polygon | shapely.MultiPolygon:
    """The instance as a shapely (multi)polygon in image coordinates.

    Uses the annotated polygon when the instance has one (the union of its
    parts), otherwise the pixel-edge outline of its mask.
    """
    import shapely

    if instance.polygon is not None:
        polys = [shapely.make_valid(shapely.Polygon(p)) for p in instance.polygon]
        geom = shapely.union_all(polys)
    else:
        y0, x0 = instance.bbox[:2]
        geom = shapely.MultiPolygon(
            [shapely.Polygon(ext + (x0, y0), [h + (x0, y0) for h in hs]) for ext, hs in trace_outline(instance.mask)]
        )
        if len(geom.geoms) == 1:
            geom = geom.geoms[0]
    if isinstance(geom, shapely.GeometryCollection) and not isinstance(geom, shapely.MultiPolygon):
        polys = [g for g in geom.geoms if isinstance(g, (shapely.Polygon, shapely.MultiPolygon))]
        geom = shapely.union_all(polys)
    return geom
