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

from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

import numpy as np

from cellbench.instances.instance import InstanceSet

__all__ = [
    "FlatLabels",
    "FlattenName",
    "FlattenPolicy",
    "NearestCentroidFlatten",
    "PriorityFlatten",
    "DEFAULT_POLICY",
    "FLATTEN_NAMES",
    "flatten",
    "policy_from_name",
]

FlattenName = Literal["priority-first", "priority-last", "nearest-centroid"]
#: The policy names, in order: for CLI choices and config validation.
FLATTEN_NAMES: tuple[FlattenName, ...] = get_args(FlattenName)


class FlattenPolicy(Protocol):
    """What a flatten policy provides: a name, its parameters, and the label image."""

    @property
    def name(self) -> str: ...

    def params(self) -> dict: ...

    def label_image(self, instances: InstanceSet) -> np.ndarray:
        """Label image where label ``k`` is instance ``k - 1`` (0 is background)."""
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

    def label_image(self, instances: InstanceSet) -> np.ndarray:
        labels = np.zeros(instances.shape, dtype=_label_dtype(len(instances)))
        order = range(len(instances))
        for k in order if self.winner == "last" else reversed(order):
            inst = instances[k]
            labels[inst.slices][inst.mask] = k + 1
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

    def label_image(self, instances: InstanceSet) -> np.ndarray:
        coverage = instances.coverage().astype(np.int32)
        kept = np.ones(len(instances), dtype=bool)
        for k in np.argsort(instances.areas, kind="stable"):
            inst = instances[k]
            shared = np.count_nonzero(coverage[inst.slices][inst.mask] > 1)
            if shared >= self.drop_covered * inst.area:
                kept[k] = False
                coverage[inst.slices] -= inst.mask
        labels = np.zeros(instances.shape, dtype=_label_dtype(len(instances)))
        nearest = np.full(instances.shape, np.inf)
        for k in np.flatnonzero(kept):
            inst = instances[k]
            cy, cx = inst.centroid
            y0, x0, y1, x1 = inst.bbox
            yy, xx = np.ogrid[y0:y1, x0:x1]
            dist = (yy - cy) ** 2 + (xx - cx) ** 2
            best = nearest[inst.slices]
            wins = inst.mask & (dist < best)
            best[wins] = dist[wins]
            labels[inst.slices][wins] = k + 1
        return labels


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
        return {
            "flatten_policy": self.policy,
            "flatten_params": dict(self.params),
            "label_meaning": "label k is instance k-1 of the source annotation order; 0 is background",
            "lost_instances": list(self.lost),
        }

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
    labels = policy.label_image(instances)
    present = np.zeros(len(instances) + 1, dtype=bool)
    present[np.unique(labels)] = True
    lost = tuple(int(k) for k in np.flatnonzero(~present[1:]))
    return FlatLabels(labels=labels, policy=policy.name, params=policy.params(), lost=lost, source=instances)


def policy_from_name(name: str) -> FlattenPolicy:
    """The policy behind a CLI name: ``priority-first``, ``priority-last`` or ``nearest-centroid``."""
    if name == "priority-first":
        return PriorityFlatten("first")
    if name == "priority-last":
        return PriorityFlatten("last")
    if name == "nearest-centroid":
        return NearestCentroidFlatten()
    raise ValueError(f"unknown flatten policy {name!r}; choose one of {', '.join(FLATTEN_NAMES)}")


def _label_dtype(n: int) -> type:
    return np.uint16 if n < 2**16 else np.uint32
