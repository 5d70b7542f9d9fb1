"""Flattening overlapping instances to a label image, by an explicit, named policy.

A label image gives each pixel one owner, so overlapping instances must lose
pixels. How they lose them changes the ground truth, so the policy is a value
passed in, and its name and parameters travel with every flattened result
(:class:`FlatLabels`), into TIFF metadata, COCO ``info`` and manifests.

Policies:

- :class:`PriorityFlatten` - by annotation order, as the Glioma C6 paper
  ("resolving conflicts deterministically according to the priority order of
  the annotated polygons"). ``winner="last"`` (default) paints instances in
  order so a later one covers an earlier one: what an annotation tool shows on
  screen and what painting polygons one by one gives. ``winner="first"`` keeps
  the earlier one.
- :class:`NearestCentroidFlatten` - the LIVECell preprocessing of Cellpose 2.0:
  visiting instances from smallest to largest, drop one when at least 75 % of
  its pixels are still shared; shared pixels then go to the covering instance
  whose centroid is nearest. (Cellpose's own code compares against every
  remaining instance, even ones not covering the pixel; cellbench only lets an
  instance win pixels it covers.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

import numpy as np

from cellbench.instances.box_index import BoxIndex
from cellbench.instances.instance import BBox, Instance, InstanceSet

__all__ = [
    "FlatLabels",
    "FlattenName",
    "FlattenPolicy",
    "NearestCentroidFlatten",
    "PriorityFlatten",
    "WindowFlattener",
    "DEFAULT_POLICY",
    "FLATTEN_NAMES",
    "flatten",
    "flatten_record",
    "label_dtype",
    "policy_from_name",
]

FlattenName = Literal["priority-first", "priority-last", "nearest-centroid"]
#: The policy names, in order: for CLI choices and config validation.
FLATTEN_NAMES: tuple[FlattenName, ...] = get_args(FlattenName)


class FlattenPolicy(Protocol):
    """What a flatten policy provides: a name, its parameters, and the labels of any window of the image.

    A window's labels depend only on the instances that reach into it (and, for
    a policy that drops instances, on what :meth:`prepare` decided once for the
    whole set), so a whole-slide label image can be written tile by tile.
    """

    @property
    def name(self) -> str: ...

    def params(self) -> dict: ...

    def prepare(self, instances: InstanceSet, index: BoxIndex) -> np.ndarray:
        """Which instances take part (boolean per instance), decided once for the set."""
        ...

    def label_window(self, instances: InstanceSet, window: BBox, near: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """Labels of ``window`` (label ``k`` is instance ``k - 1``, 0 background); ``near``: the instances whose
        box meets the window, ascending; ``kept``: :meth:`prepare`'s answer."""
        ...


@dataclass(frozen=True)
class PriorityFlatten:
    """Shared pixels go to the first (or last) instance in annotation order."""

    winner: Literal["first", "last"] = "last"

    def __post_init__(self) -> None:
        if self.winner not in ("first", "last"):
            raise ValueError(f"winner must be 'first' or 'last', got {self.winner!r}")

    @property
    def name(self) -> str:
        return f"priority-{self.winner}"

    def params(self) -> dict:
        return {"winner": self.winner}

    def prepare(self, instances: InstanceSet, index: BoxIndex) -> np.ndarray:
        return np.ones(len(instances), dtype=bool)

    def label_window(self, instances: InstanceSet, window: BBox, near: np.ndarray, kept: np.ndarray) -> np.ndarray:
        labels = _window_zeros(instances, window)
        for k in near if self.winner == "last" else near[::-1]:
            clipped = _clip(instances[k], window)
            if clipped is not None:
                where, mask, _ = clipped
                labels[where][mask] = k + 1
        return labels


@dataclass(frozen=True)
class NearestCentroidFlatten:
    """Drop mostly-covered instances, then give shared pixels to the nearest centroid."""

    drop_covered: float = 0.75

    def __post_init__(self) -> None:
        if not 0.0 < self.drop_covered <= 1.0:
            raise ValueError(f"drop_covered must be in (0, 1], got {self.drop_covered}")

    @property
    def name(self) -> str:
        return "nearest-centroid"

    def params(self) -> dict:
        return {"drop_covered": self.drop_covered}

    def prepare(self, instances: InstanceSet, index: BoxIndex) -> np.ndarray:
        """Smallest first, drop an instance when ``drop_covered`` of its pixels are covered by another kept one."""
        kept = np.ones(len(instances), dtype=bool)
        for k in np.argsort(instances.areas, kind="stable"):
            inst = instances[k]
            coverage = np.zeros(inst.mask.shape, dtype=np.int32)
            for j in index.query(inst.bbox):
                clipped = _clip(instances[j], inst.bbox) if kept[j] else None
                if clipped is not None:
                    where, mask, _ = clipped
                    coverage[where] += mask
            if np.count_nonzero(coverage[inst.mask] > 1) >= self.drop_covered * inst.area:
                kept[k] = False
        return kept

    def label_window(self, instances: InstanceSet, window: BBox, near: np.ndarray, kept: np.ndarray) -> np.ndarray:
        labels = _window_zeros(instances, window)
        nearest = np.full(labels.shape, np.inf)
        for k in near:
            clipped = _clip(instances[k], window) if kept[k] else None
            if clipped is None:
                continue
            where, mask, (y0, x0, y1, x1) = clipped
            cy, cx = instances[k].centroid
            yy, xx = np.ogrid[y0:y1, x0:x1]
            dist = (yy - cy) ** 2 + (xx - cx) ** 2
            best = nearest[where]
            wins = mask & (dist < best)
            best[wins] = dist[wins]
            labels[where][wins] = k + 1
        return labels


def _window_zeros(instances: InstanceSet, window: BBox) -> np.ndarray:
    return np.zeros((window[2] - window[0], window[3] - window[1]), dtype=label_dtype(len(instances)))


def _clip(inst: Instance, window: BBox) -> tuple[tuple[slice, slice], np.ndarray, BBox] | None:
    """The part of ``inst`` inside ``window``: its place in the window, its mask there, its image box; None when
    the boxes do not meet."""
    y0, x0 = max(inst.bbox[0], window[0]), max(inst.bbox[1], window[1])
    y1, x1 = min(inst.bbox[2], window[2]), min(inst.bbox[3], window[3])
    if y0 >= y1 or x0 >= x1:
        return None
    mask = inst.mask[y0 - inst.bbox[0] : y1 - inst.bbox[0], x0 - inst.bbox[1] : x1 - inst.bbox[1]]
    where = (slice(y0 - window[0], y1 - window[0]), slice(x0 - window[1], x1 - window[1]))
    return where, mask, (y0, x0, y1, x1)


DEFAULT_POLICY: FlattenPolicy = PriorityFlatten("last")


@dataclass(frozen=True, eq=False)
class FlatLabels:
    """A label image made by a named policy, with what it cost.

    Label ``k`` is instance ``k - 1`` of the source set, so ids can have gaps:
    ``lost`` lists the instances left with no pixel (dropped or fully hidden).
    """

    labels: np.ndarray
    policy: str
    params: dict = field(default_factory=dict)
    lost: tuple[int, ...] = ()
    source: InstanceSet | None = None

    def metadata(self) -> dict:
        """JSON-ready record of how this label image was made."""
        return flatten_record(self.policy, self.params, self.lost)

    def to_instance_set(self) -> InstanceSet:
        """The flattened instances, keeping class, score and source id of each survivor."""
        flat = InstanceSet.from_label_image(self.labels)
        if self.source is None:
            return flat
        kept = []
        for inst in flat:
            orig = self.source[inst.source_id - 1]
            kept.append(
                inst.replace(class_id=orig.class_id, score=orig.score, source_id=orig.source_id)
            )
        return InstanceSet(shape=flat.shape, instances=tuple(kept), classes=self.source.classes)


def flatten_record(policy: str, params: dict, lost: Iterable[int]) -> dict:
    """JSON-ready record of how a label image was made: the policy, its parameters, the instances it lost."""
    return {
        "flatten_policy": policy,
        "flatten_params": dict(params),
        "label_meaning": "label k is instance k-1 of the source annotation order; 0 is background",
        "lost_instances": [int(k) for k in lost],
    }


def flatten(instances: InstanceSet, policy: FlattenPolicy = DEFAULT_POLICY) -> FlatLabels:
    """Flatten ``instances`` to a label image with ``policy``; the result records the policy.

    >>> from cellbench.instances import Instance
    >>> a = Instance(np.ones((1, 2), bool), (0, 0, 1, 2))
    >>> b = Instance(np.ones((1, 2), bool), (0, 1, 1, 3))
    >>> s = InstanceSet((1, 3), (a, b))
    >>> flatten(s, PriorityFlatten("first")).labels.tolist()
    [[1, 1, 2]]
    >>> flatten(s, PriorityFlatten("last")).labels.tolist()
    [[1, 2, 2]]
    """
    flattener = WindowFlattener(instances, policy)
    labels = flattener.window((0, 0, *instances.shape))
    return FlatLabels(labels=labels, policy=policy.name, params=policy.params(), lost=flattener.lost,
                      source=instances)


class WindowFlattener:
    """The labels of any window, as :func:`flatten` labels the whole image, without the whole image.

    :attr:`lost` is the instances left with no pixel in the windows asked for
    so far (all of them, once the windows have covered the image).

    >>> from cellbench.instances import Instance
    >>> a = Instance(np.ones((1, 2), bool), (0, 0, 1, 2))
    >>> b = Instance(np.ones((1, 2), bool), (0, 1, 1, 3))
    >>> flat = WindowFlattener(InstanceSet((1, 3), (a, b)), PriorityFlatten("last"))
    >>> flat.window((0, 0, 1, 2)).tolist(), flat.window((0, 2, 1, 3)).tolist(), flat.lost
    ([[1, 2]], [[2]], ())
    """

    def __init__(self, instances: InstanceSet, policy: FlattenPolicy) -> None:
        self.instances, self.policy = instances, policy
        self._index = BoxIndex(inst.bbox for inst in instances)
        self._kept = policy.prepare(instances, self._index)
        self._present = np.zeros(len(instances) + 1, dtype=bool)

    def window(self, window: BBox) -> np.ndarray:
        """Labels of ``window`` (y0, x0, y1, x1)."""
        labels = self.policy.label_window(self.instances, window, self._index.query(window), self._kept)
        self._present[np.unique(labels)] = True
        return labels

    @property
    def lost(self) -> tuple[int, ...]:
        return tuple(int(k) for k in np.flatnonzero(~self._present[1:]))


def policy_from_name(name: str) -> FlattenPolicy:
    """The policy behind a CLI name: ``priority-first``, ``priority-last`` or ``nearest-centroid``."""
    if name == "priority-first":
        return PriorityFlatten("first")
    if name == "priority-last":
        return PriorityFlatten("last")
    if name == "nearest-centroid":
        return NearestCentroidFlatten()
    raise ValueError(f"unknown flatten policy {name!r}; choose one of {', '.join(FLATTEN_NAMES)}")


def label_dtype(n: int) -> type:
    """The integer type of a label image of ``n`` instances."""
    return np.uint16 if n < 2**16 else np.uint32
