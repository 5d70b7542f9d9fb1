"""Per-instance shape measurements (Glioma C6 Figs. 2-3, the 18-methods paper's covariates).

Each instance is measured on its own bounding-box mask, so overlapping
instances are each measured whole (a flattened label image would cut one of
them). Definitions:

* ``area``: pixel count;
* ``perimeter``, ``eccentricity``, ``solidity``, ``equivalent_diameter``:
  scikit-image ``regionprops`` (``perimeter``, ``eccentricity``,
  ``solidity``, ``equivalent_diameter_area``);
* ``convexity``: perimeter of the convex hull / perimeter, both by the same
  estimator (``regionprops`` perimeter; the hull is ``image_convex``), so a
  convex shape gives 1 and a ragged or concave outline less than 1;
* ``elongation``: ``eb / ea``, the smaller over the larger eigenvalue of the
  covariance of the boundary points (the 18-methods paper). The boundary is
  the sub-pixel outline (marching squares at 0.5, holes included) and its
  points are spread uniformly along it (each outline segment weighted by its
  length). **1 for a disc or a square, smaller the more elongated** (a
  2:1 ellipse gives ~0.345; for points spread uniformly in the angle parameter
  instead of arc length it would be ``(b / a)**2`` = 0.25).

Ratios that are undefined (a shape with zero perimeter) are ``None``.

Every measure depends on the mask alone (not on where it lies in the
image), so :func:`measure_masks` measures each distinct mask once and hands
the same :class:`ShapeMeasures` to its copies: predictions of thousands of
one- or two-pixel fragments repeat a few shapes.

pandas is not a dependency of cellbench, so the table is a tuple of frozen
:class:`MorphologyRecord` (one per instance) with :func:`morphology_rows`
(tidy dicts, e.g. for ``pandas.DataFrame(rows)``) and
:func:`write_morphology_csv`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cellbench.files import atomic_write_bytes
from cellbench.instances import InstanceSet

__all__ = [
    "COLUMNS",
    "MEASURES",
    "MorphologyRecord",
    "ShapeMeasures",
    "Source",
    "boundary_covariance",
    "measure_instances",
    "measure_mask",
    "measure_masks",
    "morphology_rows",
    "morphology_table",
    "write_morphology_csv",
]

Source = Literal["ground truth", "prediction"]

#: The shape measures, in column order.
MEASURES = ("area", "perimeter", "eccentricity", "solidity", "convexity", "elongation", "equivalent_diameter")
#: The CSV columns, in order.
COLUMNS = ("source", "image", "instance", "source_id", "class", "centroid_row", "centroid_col", *MEASURES)


@dataclass(frozen=True)
class ShapeMeasures:
    """The shape of one mask (see the module docstring for the definitions)."""

    area: int
    perimeter: float
    eccentricity: float
    solidity: float
    convexity: float | None
    elongation: float | None
    equivalent_diameter: float


@dataclass(frozen=True)
class MorphologyRecord:
    """One instance of one image: where it is from and its :class:`ShapeMeasures`.

    ``instance`` is the index of the instance in its image's annotation (or
    prediction) order; ``source_id`` is the annotation id or label value.
    """

    source: str
    image: str
    instance: int
    source_id: int | str | None
    class_name: str
    centroid_row: float
    centroid_col: float
    shape: ShapeMeasures

    def to_row(self) -> dict:
        """A flat dict keyed by :data:`COLUMNS` (``class_name`` is the column ``class``)."""
        row = {
            "source": self.source,
            "image": self.image,
            "instance": self.instance,
            "source_id": self.source_id,
            "class": self.class_name,
            "centroid_row": self.centroid_row,
            "centroid_col": self.centroid_col,
        }
        row.update({m: getattr(self.shape, m) for m in MEASURES})
        return row


def boundary_covariance(mask: np.ndarray) -> np.ndarray:
    """2 x 2 covariance (row, col) of points spread uniformly along the outline of ``mask``.

    The outline is the marching-squares contour at 0.5 of the zero-padded
    mask (every closed ring, holes included); each segment ``p -> q`` of
    length ``L`` contributes its exact line integrals, so the result does not
    depend on how densely the contour happens to be sampled.

    >>> np.round(boundary_covariance(np.ones((3, 3), bool)), 3).tolist()
    [[1.368, 0.0], [0.0, 1.368]]
    """
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask, dtype=np.float64), 1)
    rings = [c for c in find_contours(padded, 0.5) if len(c) > 1]
    if not rings:
        return np.zeros((2, 2))
    p = np.concatenate([c[:-1] for c in rings])
    q = np.concatenate([c[1:] for c in rings])
    length = np.hypot(*(q - p).T)
    total = length.sum()
    if total == 0:
        return np.zeros((2, 2))
    mean = (length[:, None] * (p + q)).sum(axis=0) / (2 * total)
    # integral of x x^T over a segment = L (p p^T + q q^T + (p q^T + q p^T) / 2) / 3
    pp = np.einsum("n,ni,nj->ij", length, p, p)
    qq = np.einsum("n,ni,nj->ij", length, q, q)
    pq = np.einsum("n,ni,nj->ij", length, p, q)
    second = (pp + qq + (pq + pq.T) / 2) / (3 * total)
    return second - np.outer(mean, mean)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 and math.isfinite(num / den) else None


def measure_mask(mask: np.ndarray) -> ShapeMeasures:
    """Measure one boolean mask (any crop containing the whole object).

    >>> m = measure_mask(np.ones((4, 4), bool))
    >>> m.area, m.eccentricity, m.solidity, m.convexity, round(m.elongation, 6)
    (16, 0.0, 1.0, 1.0, 1.0)
    """
    from skimage.measure import perimeter, regionprops

    mask = np.pad(np.asarray(mask, dtype=bool), 1)  # regionprops then never sees the object touch the edge
    props = regionprops(mask.astype(np.uint8))
    if not props:
        raise ValueError("mask has no pixel")
    r = props[0]
    per = float(r.perimeter)
    hull_per = float(perimeter(r.image_convex))
    eigen = np.linalg.eigvalsh(boundary_covariance(mask))  # ascending: eb, ea
    return ShapeMeasures(
        area=int(r.area),
        perimeter=per,
        eccentricity=float(r.eccentricity),
        solidity=float(r.solidity),
        convexity=_ratio(hull_per, per),
        elongation=_ratio(max(float(eigen[0]), 0.0), float(eigen[1])),
        equivalent_diameter=float(r.equivalent_diameter_area),
    )


def measure_masks(masks: Iterable[np.ndarray], *, memo: dict | None = None) -> list[ShapeMeasures]:
    """:func:`measure_mask` of each mask, in order, measuring each distinct mask once.

    ``memo`` (mask shape and pixels -> measures) may be shared by several
    calls, so that a mask seen before is not measured again. The numbers are
    those of :func:`measure_mask`: a copy gets the very record of its twin.

    >>> a, b = measure_masks([np.ones((2, 3), bool), np.ones((2, 3), bool)])
    >>> a is b, a.area
    (True, 6)
    """
    memo = {} if memo is None else memo
    shapes = []
    for mask in masks:
        mask = np.asarray(mask, dtype=bool)
        key = (mask.shape, mask.tobytes())
        if key not in memo:
            memo[key] = measure_mask(mask)
        shapes.append(memo[key])
    return shapes


def measure_instances(
    instances: InstanceSet, *, image: str, source: Source = "ground truth", memo: dict | None = None
) -> tuple[MorphologyRecord, ...]:
    """One record per instance of one image, each measured on its own (bbox-cropped) mask.

    ``memo``: as for :func:`measure_masks`, to share measures of equal masks across calls.

    >>> s = InstanceSet.from_label_image(np.pad(np.ones((3, 3), np.uint8), 2))
    >>> rec = measure_instances(s, image="a")[0]
    >>> rec.class_name, rec.shape.area, rec.centroid_row
    ('cell', 9, 3.0)
    """
    records = []
    shapes = measure_masks((inst.mask for inst in instances), memo=memo)
    for k, (inst, shape) in enumerate(zip(instances, shapes)):
        row, col = inst.centroid
        records.append(MorphologyRecord(
            source=source,
            image=image,
            instance=k,
            source_id=inst.source_id,
            class_name=instances.classes[inst.class_id],
            centroid_row=row,
            centroid_col=col,
            shape=shape,
        ))
    return tuple(records)


def morphology_table(
    images: Mapping[str, InstanceSet] | Iterable[tuple[str, InstanceSet]],
    *,
    source: Source = "ground truth",
    progress: Callable | None = None,
) -> tuple[MorphologyRecord, ...]:
    """Records of every instance of every image (``{name: InstanceSet}`` or ``(name, set)`` pairs), in order.

    ``progress`` is a tqdm-compatible wrapper of the image iterable.
    """
    items = list(images.items() if isinstance(images, Mapping) else images)
    if progress is not None:
        items = progress(items, desc=f"measuring {source}", unit="image")
    memo: dict = {}
    return tuple(rec for name, s in items for rec in measure_instances(s, image=name, source=source, memo=memo))


def morphology_rows(records: Iterable[MorphologyRecord]) -> list[dict]:
    """The tidy table: one dict per instance keyed by :data:`COLUMNS`."""
    return [r.to_row() for r in records]


def write_morphology_csv(records: Iterable[MorphologyRecord], path: str | Path) -> Path:
    """Write the table as CSV (atomically); undefined values are empty cells."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in morphology_rows(records):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path
