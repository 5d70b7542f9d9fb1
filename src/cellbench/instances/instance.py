"""Instances that may overlap: the core data type of cellbench.

An :class:`Instance` is one object stored as a boolean mask cropped to its
bounding box, so memory grows with object area, not with image area times
object count. An :class:`InstanceSet` is all instances of one image; unlike a
label image it can hold instances whose pixels overlap (Glioma C6 ground truth
does), and it converts to and from label images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cellbench.errors import DataError
from cellbench.instances.box_index import BoxIndex

__all__ = ["BBox", "Instance", "InstanceSet"]

BBox = tuple[int, int, int, int]
"""(y0, x0, y1, x1): half-open pixel rows y0..y1-1 and columns x0..x1-1."""


@dataclass(frozen=True, eq=False)
class Instance:
    """One object: a boolean mask cropped to ``bbox``, a class and optional extras.

    Attributes:
        mask: boolean array of shape ``(y1 - y0, x1 - x0)``; read-only.
        bbox: ``(y0, x0, y1, x1)`` in image pixels, half open.
        class_id: index into the ``classes`` of the :class:`InstanceSet` holding it.
        score: detection confidence, for predictions (needed by COCO metrics).
        polygon: the annotated outline when the source had one: a tuple of
            ``(n, 2)`` arrays of ``x, y`` vertices in COCO coordinates (pixel
            ``(r, c)`` spans ``[c, c+1] x [r, r+1]``). Several parts are still
            ONE instance.
        source_id: the annotation id or label value this instance came from.

    >>> inst = Instance.from_mask(np.pad(np.ones((2, 3), bool), 1))
    >>> inst.bbox, inst.area
    ((1, 1, 3, 4), 6)
    """

    mask: np.ndarray
    bbox: BBox
    class_id: int = 0
    score: float | None = None
    polygon: tuple[np.ndarray, ...] | None = None
    source_id: int | str | None = None

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.dtype != bool:
            mask = mask.astype(bool)
        y0, x0, y1, x1 = (int(v) for v in self.bbox)
        if mask.ndim != 2 or mask.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"mask shape {mask.shape} does not match bbox {self.bbox}")
        mask.flags.writeable = False
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "bbox", (y0, x0, y1, x1))
        object.__setattr__(self, "class_id", int(self.class_id))
        if self.score is not None:
            object.__setattr__(self, "score", float(self.score))

    @classmethod
    def from_mask(cls, mask: np.ndarray, *, offset: tuple[int, int] = (0, 0), **fields) -> Instance:
        """Build an instance from a boolean mask placed at ``offset`` (row, col), cropping it tight.

        Raises ``ValueError`` when the mask has no pixel.
        """
        mask = np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            raise ValueError("instance mask has no pixel")
        cols = np.flatnonzero(mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        y, x = offset
        return cls(mask=mask[r0:r1, c0:c1], bbox=(y + r0, x + c0, y + r1, x + c1), **fields)

    @cached_property
    def area(self) -> int:
        """Number of pixels."""
        return int(np.count_nonzero(self.mask))

    @cached_property
    def centroid(self) -> tuple[float, float]:
        """Mean pixel position ``(row, col)`` in image coordinates."""
        rr, cc = np.nonzero(self.mask)
        return float(rr.mean() + self.bbox[0]), float(cc.mean() + self.bbox[1])

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index of the bounding box in a full-image array."""
        y0, x0, y1, x1 = self.bbox
        return slice(y0, y1), slice(x0, x1)

    def to_full(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask as a full-image boolean array of ``shape``."""
        full = np.zeros(shape, dtype=bool)
        full[self.slices] = self.mask
        return full

    def replace(self, **changes) -> Instance:
        """A copy with some fields changed (the mask is shared, it is read-only)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class InstanceSet:
    """All instances of one image, in annotation order; they may overlap.

    Attributes:
        shape: ``(height, width)`` of the image.
        instances: the instances, in the order of the source (that order is
            the priority order of the ``priority`` flatten policy).
        classes: class names; ``Instance.class_id`` indexes this tuple.

    >>> labels = np.array([[0, 1, 1], [0, 0, 3]])
    >>> s = InstanceSet.from_label_image(labels)
    >>> len(s), [i.source_id for i in s], s.n_overlapping
    (2, [1, 3], 0)
    """

    shape: tuple[int, int]
    instances: tuple[Instance, ...] = ()
    classes: tuple[str, ...] = ("cell",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        object.__setattr__(self, "instances", tuple(self.instances))
        object.__setattr__(self, "classes", tuple(self.classes))
        h, w = self.shape
        for i, inst in enumerate(self.instances):
            y0, x0, y1, x1 = inst.bbox
            if y0 < 0 or x0 < 0 or y1 > h or x1 > w:
                raise ValueError(f"instance {i} bbox {inst.bbox} lies outside image of shape {self.shape}")
            if not 0 <= inst.class_id < len(self.classes):
                raise ValueError(f"instance {i} class_id {inst.class_id} not in classes {self.classes}")

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    def __getitem__(self, index: int) -> Instance:
        return self.instances[index]

    @classmethod
    def from_label_image(
        cls,
        labels: np.ndarray,
        *,
        classes: Sequence[str] = ("cell",),
        class_id: int = 0,
        source: str | None = None,
    ) -> InstanceSet:
        """One instance per non-zero label value; ids may have gaps.

        ``source`` names the file in error messages. Float, bool or negative
        labels are refused: a label image holds integer ids.
        """
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise DataError(f"label image must be 2-D, got shape {labels.shape}", path=source)
        if labels.dtype.kind not in "iu":
            raise DataError(f"label image has non-integer dtype {labels.dtype}", path=source)
        if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
            raise DataError("label image has negative ids", path=source)
        instances = []
        if labels.size and labels.max() > 0:
            from scipy import ndimage  # here, not at the top: scipy.ndimage takes ~0.3 s to import

            compact, ids = _compact_labels(labels)
            for k, found in enumerate(ndimage.find_objects(compact)):
                if found is None:
                    continue
                crop = compact[found] == k + 1
                offset = (found[0].start, found[1].start)
                instances.append(
                    Instance.from_mask(crop, offset=offset, class_id=class_id, source_id=int(ids[k]))
                )
        return cls(shape=labels.shape, instances=tuple(instances), classes=tuple(classes))

    @property
    def class_ids(self) -> np.ndarray:
        return np.array([i.class_id for i in self.instances], dtype=np.int64)

    @property
    def areas(self) -> np.ndarray:
        return np.array([i.area for i in self.instances], dtype=np.int64)

    @property
    def scores(self) -> np.ndarray | None:
        """Scores of all instances, or None when any instance has none."""
        if any(i.score is None for i in self.instances):
            return None
        return np.array([i.score for i in self.instances], dtype=np.float64)

    def coverage(self) -> np.ndarray:
        """How many instances cover each pixel (uint16 image)."""
        count = np.zeros(self.shape, dtype=np.uint16)
        for inst in self.instances:
            count[inst.slices] += inst.mask
        return count

    def overlapping(self) -> np.ndarray:
        """Boolean per instance: does it share a pixel with another instance? (Only instances whose boxes meet
        are compared, so a whole slide costs no full-image array.)"""
        index = BoxIndex(inst.bbox for inst in self.instances)
        found = np.zeros(len(self.instances), dtype=bool)
        for i, inst in enumerate(self.instances):
            for j in index.query(inst.bbox):
                if j > i and _share_pixel(inst, self.instances[j]):
                    found[i] = found[j] = True
        return found

    @property
    def n_overlapping(self) -> int:
        """Number of instances sharing at least one pixel with another instance."""
        return int(self.overlapping().sum())

    def class_counts(self) -> dict[str, int]:
        """Instance count per class name (every class listed, zeros included)."""
        counts = np.bincount(self.class_ids, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    def remap_classes(self, mapping: dict[str, str], classes: Sequence[str]) -> InstanceSet:
        """Keep instances whose class is a key of ``mapping``, renamed to its value.

        ``classes`` is the new class tuple; every value of ``mapping`` must be in it.
        """
        index = {name: k for k, name in enumerate(classes)}
        kept = []
        for inst in self.instances:
            new = mapping.get(self.classes[inst.class_id])
            if new is not None:
                kept.append(inst.replace(class_id=index[new]))
        return InstanceSet(shape=self.shape, instances=tuple(kept), classes=tuple(classes))

    def replace(self, **changes) -> InstanceSet:
        return dataclasses.replace(self, **changes)


def _share_pixel(a: Instance, b: Instance) -> bool:
    y0, x0 = max(a.bbox[0], b.bbox[0]), max(a.bbox[1], b.bbox[1])
    y1, x1 = min(a.bbox[2], b.bbox[2]), min(a.bbox[3], b.bbox[3])
    return bool((a.mask[y0 - a.bbox[0] : y1 - a.bbox[0], x0 - a.bbox[1] : x1 - a.bbox[1]]
                 & b.mask[y0 - b.bbox[0] : y1 - b.bbox[0], x0 - b.bbox[1] : x1 - b.bbox[1]]).any())


def _compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel to 1..n (0 stays background) so find_objects does not walk gaps; also return old ids."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if ids.size and ids[-1] == ids.size:  # already 1..n
        return labels, ids
    lookup = np.searchsorted(ids, labels)
    compact = np.where(labels == 0, 0, lookup + 1).astype(np.int64)
    return compact, ids
