"""What a metric plug-in is: one image's part, how parts add up, and the words the report shows.

A metric family is a small frozen class. :meth:`Metric.image` scores one image
(:class:`ImagePair`: the overlaps of its GT and predicted instances, after the
boundary rule) and returns a *part*: a record that adds with ``+`` (summed
over images it gives the pooled figure) and whose values :meth:`Metric.values`
names. The evaluator (:mod:`cellbench.metrics.evaluate`) reads nothing else:
it writes each family's values per image, pooled over images (when
``pooled``) and as mean / median / sample std over images (``averaged``,
``spread``). The class attributes ``title`` (the paper's name) and
``convention`` (how instances are matched) are what the report and
``cellbench evaluate --metrics`` show. :mod:`cellbench.metrics.registry` lists
the families; a new metric is one module with its class, a line there, and
its test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, ClassVar

import numpy as np

from cellbench.instances import InstanceSet
from cellbench.matching import Overlaps

__all__ = ["ImagePair", "Metric", "category_names"]


@dataclass(frozen=True)
class ImagePair:
    """One image as a metric sees it: its name, the IoU thresholds, the overlaps of GT and prediction.

    ``gt`` and ``pred`` are the instances (after the boundary rule) when the
    image was scored as instances, None when two label images took the
    pixel-pair path (the overlaps alone then describe them: areas and
    intersections, no instance overlaps itself).
    """

    name: str
    thresholds: tuple[float, ...]
    overlaps: Overlaps
    gt: InstanceSet | None = None
    pred: InstanceSet | None = None

    def categories(self, *, by_name: bool = False) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(category, GT selector, prediction selector) per category (needs instances).

        Categories are matched by class name. For COCO, when either side has a
        single class the evaluation is class-agnostic (one category), so a model
        that calls everything "cell" is scored against GT named "nucleus".
        """
        g, p = self.gt, self.pred
        names = category_names(g.classes, p.classes, by_name=by_name)
        if not by_name and len(names) == 1:
            yield names[0], np.ones(len(g), bool), np.ones(len(p), bool)
            return
        gnames = np.array([g.classes[i.class_id] for i in g], dtype=object)
        pnames = np.array([p.classes[i.class_id] for i in p], dtype=object)
        for cname in names:
            yield cname, gnames == cname, pnames == cname

    def select(self, gt_keep: np.ndarray, pred_keep: np.ndarray) -> ImagePair:
        """The pair restricted to the flagged GT and predicted instances (one class of a per-class score)."""
        return ImagePair(
            self.name,
            self.thresholds,
            self.overlaps.select(gt_keep, pred_keep),
            self.gt.replace(instances=tuple(i for i, k in zip(self.gt, gt_keep) if k)),
            self.pred.replace(instances=tuple(i for i, k in zip(self.pred, pred_keep) if k)),
        )


def category_names(g: Sequence[str], p: Sequence[str], *, by_name: bool = False) -> list[str]:
    """Category names of a GT / prediction pair: by class name, or one class-agnostic category for COCO
    when either side has a single class (unless ``by_name``).

    >>> category_names(("nucleus",), ("cell",)), category_names(("A", "B"), ("B", "C"))
    (['nucleus'], ['A', 'B', 'C'])
    """
    if not by_name and (len(g) == 1 or len(p) == 1):
        return [g[0]]
    return list(dict.fromkeys([*g, *p]))


@dataclass(frozen=True)
class Metric:
    """A metric family. Subclasses set the class attributes and :meth:`image`; options are dataclass fields.

    Class attributes:
        name: the key of ``--metrics`` and of :func:`cellbench.metrics.registry.metric_named`.
        title: the paper's name of what is computed (the report's header).
        convention: how GT and predicted instances are matched, in words (the report says it).
        per_threshold: :meth:`image` returns one part per IoU threshold, written under each threshold;
            otherwise one part, whose values do not depend on the threshold (shown beside every threshold).
        pooled: the values of the parts summed over images are reported (``pooled``).
        averaged: values averaged over the images where they are defined (``image_mean``) ...
        spread: ... of which these also get ``_median`` and ``_std``.
        needs_instances: scored on instances only (two label images take the pixel-pair path otherwise).
        per_class: scored for each class alone too, when the evaluation is per class.
        ratios: values that are ratios of summed TP / FP / FN (:data:`cellbench.matching.COUNT_RATIOS`),
            which the bootstrap of :mod:`cellbench.analysis.certainty` recomputes from per-image counts.
        zero: the part of no image at all (what :meth:`total` starts from).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    convention: ClassVar[str]
    per_threshold: ClassVar[bool] = False
    pooled: ClassVar[bool] = True
    averaged: ClassVar[tuple[str, ...]] = ()
    spread: ClassVar[tuple[str, ...]] = ()
    needs_instances: ClassVar[bool] = False
    per_class: ClassVar[bool] = True
    ratios: ClassVar[Mapping[str, tuple[tuple[int, int, int], tuple[int, int, int]]]] = {}
    zero: ClassVar[Any] = None

    def image(self, pair: ImagePair) -> Any:
        """One image's part (a tuple of parts, one per threshold, when ``per_threshold``)."""
        raise NotImplementedError

    def values(self, part: Any) -> dict[str, Any]:
        """The named values of one part (one image's, or the parts of several images summed)."""
        return part.to_dict()

    def add(self, total: Any, part: Any) -> Any:
        """A running total with one more image's part: the evaluator folds images in one at a time from
        ``zero``, keeping no image's part (unless the metric has a :meth:`summary`)."""
        return total + part

    def total(self, parts: Sequence[Any]) -> Any:
        """Parts summed over images, in order."""
        return reduce(self.add, parts, self.zero)

    def summary(self, parts: Sequence[Any], names: Sequence[str]) -> Any:
        """A figure of the whole set of images that is no sum of per-image values (COCO), or None. A metric
        that defines it has every image's part kept for it (COCO's are its ranked detections)."""
        return None
