"""The in-memory dataset model every layout reads into.

A :class:`Dataset` is a tuple of :class:`Sample` (one image and its
:class:`~cellbench.instances.InstanceSet`), the class names, and the tasks the
dataset offers. A task keeps some classes and renames them, e.g. Glioma C6
``cells`` merges cell type A and B into ``cell``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellbench.data.images import read_image
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

__all__ = ["Dataset", "Sample", "Task"]


@dataclass(frozen=True)
class Task:
    """Which classes a task keeps, and under which names.

    ``mapping`` sends a source class name to the task's class name; classes
    not in it are dropped.
    """

    name: str
    mapping: Mapping[str, str]
    description: str = ""

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.mapping.values()))


@dataclass(frozen=True, eq=False)
class Sample:
    """One image and its instances. The pixels load on demand."""

    name: str
    instances: InstanceSet
    image_path: Path | None = None
    split: str | None = None
    meta: Mapping = field(default_factory=dict)
    array: np.ndarray | None = field(default=None, repr=False)

    def load_image(self) -> np.ndarray:
        """The image pixels (from memory for array-backed layouts such as TissueNet)."""
        if self.array is not None:
            return self.array
        if self.image_path is None:
            raise DataError(f"sample {self.name!r} has no image")
        return read_image(self.image_path)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples of one layout, split and task, with their class names."""

    layout: str
    root: Path
    samples: tuple[Sample, ...]
    classes: tuple[str, ...]
    split: str | None = None
    task: str = "all"
    tasks: Mapping[str, Task] = field(default_factory=dict)
    meta: Mapping = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def with_task(self, name: str) -> Dataset:
        """The dataset restricted to a task's classes (``all`` keeps everything).

        Raises :class:`DataError` for an unknown task or one whose classes this
        dataset (or split) does not have.
        """
        if name in ("all", self.task):
            return self
        task = self.tasks.get(name)
        if task is None:
            offered = ", ".join(["all", *self.tasks]) or "all"
            raise DataError(f"layout {self.layout} has no task {name!r}; tasks: {offered}", path=self.root)
        if not set(task.mapping) & set(self.classes):
            raise DataError(
                f"task {name!r} needs classes {sorted(task.mapping)}, but this "
                f"{'split ' + self.split + ' of the ' if self.split else ''}dataset has {list(self.classes)}",
                path=self.root,
            )
        samples = tuple(
            dataclasses.replace(s, instances=s.instances.remap_classes(dict(task.mapping), task.classes))
            for s in self.samples
        )
        return dataclasses.replace(self, samples=samples, classes=task.classes, task=name)

    def summary(self) -> dict:
        """Counts a user wants first: images, instances, per class, overlapping, per split."""
        per_class = dict.fromkeys(self.classes, 0)
        per_split: dict[str, dict[str, int]] = {}
        n_instances = n_overlap = 0
        for s in self.samples:
            for name, n in s.instances.class_counts().items():
                per_class[name] += n
            overlapping = s.instances.n_overlapping
            n_instances += len(s.instances)
            n_overlap += overlapping
            split = per_split.setdefault(s.split or "all", {"n_images": 0, "n_instances": 0})
            split["n_images"] += 1
            split["n_instances"] += len(s.instances)
        return {
            "layout": self.layout,
            "root": str(self.root),
            "split": self.split,
            "task": self.task,
            "classes": list(self.classes),
            "tasks": ["all", *self.tasks],
            "n_images": len(self.samples),
            "n_instances": n_instances,
            "per_class": per_class,
            "n_overlapping_instances": n_overlap,
            "per_split": per_split,
        }
