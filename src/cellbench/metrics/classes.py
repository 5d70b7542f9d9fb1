"""Scoring classified instances: per-class figures (the COCO rule) and a class confusion table.

A task with several classes (Glioma C6 cell type A and B) is scored in two
complementary ways, both reported:

1. **Per class** (``evaluate(..., per_class=True)``, the figures of
   :mod:`cellbench.metrics.evaluate`): each class is matched on its own, GT of
   class c against predictions of class c, as COCO evaluates each category
   and as the Glioma C6 paper scores its type A and type B tasks. So a
   predicted type-A cell lying on a type-B ground-truth cell is a **false
   positive for A and a false negative for B**: a right mask with the wrong
   class earns nothing. ``macro`` is the mean over classes of the pooled figures.

2. **Class confusion of the matched pairs** (:func:`class_confusion`, this
   module): GT and predictions are first matched *ignoring class* (the one
   IoU >= t matching rule of :mod:`cellbench.matching`), then every matched
   pair is counted in a table, GT class by predicted class. The diagonal is
   what per-class scoring counts as true positives; off the diagonal are the
   cells found but misclassified, which per-class scoring counts twice (FP and
   FN). Unmatched GT (``missed``) and unmatched predictions (``spurious``)
   complete the table, so its rows add up to the GT counts and its columns to
   the prediction counts. ``class_accuracy`` is the diagonal over all matched
   pairs: how well a method classifies the cells it segments.

A single-class prediction (classes ``("cell",)``) scored against several GT
classes is one column: it shows how each GT class is found, with no
classification to judge.

>>> import numpy as np
>>> from cellbench.instances import InstanceSet
>>> gt = InstanceSet.from_label_image(np.array([[1, 1, 0, 2, 2]]), classes=("A", "B"))
>>> gt = gt.replace(instances=(gt[0], gt[1].replace(class_id=1)))
>>> pred = gt.replace(instances=(gt[0].replace(class_id=1), gt[1]))  # the first cell called B
>>> c = class_confusion([gt], [pred], threshold=0.5)
>>> c.to_dict()["matched"], c.to_dict()["class_accuracy"]
({'A': {'A': 0, 'B': 1}, 'B': {'A': 0, 'B': 1}}, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.matching import match_pairs, overlaps_from_instances
from cellbench.metrics.boundary import drop_boundary

__all__ = ["ClassConfusion", "class_confusion", "confusion_image"]


@dataclass(frozen=True)
class ClassConfusion:
    """Matched pairs counted by GT class (rows) and predicted class (columns), plus the unmatched.

    Attributes:
        threshold: the IoU a pair needs to be matched.
        gt_classes, pred_classes: row and column names.
        matched: ``len(gt_classes) x len(pred_classes)`` pair counts.
        missed: unmatched GT per GT class (false negatives of class-agnostic matching).
        spurious: unmatched predictions per predicted class (its false positives).
    """

    threshold: float
    gt_classes: tuple[str, ...]
    pred_classes: tuple[str, ...]
    matched: np.ndarray
    missed: np.ndarray
    spurious: np.ndarray

    @property
    def class_accuracy(self) -> float | None:
        """Matched pairs whose classes agree (by name) over all matched pairs; None when none matched or
        when the prediction names no GT class (a single-class method: no classification to judge)."""
        total = int(self.matched.sum())
        if total == 0 or not set(self.gt_classes) & set(self.pred_classes):
            return None
        same = sum(int(self.matched[i, self.pred_classes.index(name)])
                   for i, name in enumerate(self.gt_classes) if name in self.pred_classes)
        return same / total

    def __add__(self, other: ClassConfusion) -> ClassConfusion:
        if (self.threshold, self.gt_classes, self.pred_classes) != (other.threshold, other.gt_classes,
                                                                     other.pred_classes):
            raise DataError(f"cannot add confusion tables of classes {self.gt_classes} x {self.pred_classes} "
                            f"and {other.gt_classes} x {other.pred_classes}")
        return ClassConfusion(self.threshold, self.gt_classes, self.pred_classes, self.matched + other.matched,
                              self.missed + other.missed, self.spurious + other.spurious)

    def to_dict(self) -> dict:
        """Plain JSON: ``matched[gt][pred]``, ``missed[gt]``, ``spurious[pred]``, ``class_accuracy``."""
        return {
            "iou_threshold": float(self.threshold),
            "rule": "class-agnostic optimal matching at IoU >= threshold; matched pairs counted GT class x "
                    "predicted class; missed = unmatched GT, spurious = unmatched predictions",
            "matched": {g: {p: int(self.matched[i, j]) for j, p in enumerate(self.pred_classes)}
                        for i, g in enumerate(self.gt_classes)},
            "missed": {g: int(n) for g, n in zip(self.gt_classes, self.missed)},
            "spurious": {p: int(n) for p, n in zip(self.pred_classes, self.spurious)},
            "class_accuracy": self.class_accuracy,
        }


def confusion_image(gt: InstanceSet, pred: InstanceSet, *, threshold: float = 0.5,
                    boundary_px: int = 0) -> ClassConfusion:
    """The class confusion of one image (instances touching a ``boundary_px`` frame removed first, as in
    :func:`~cellbench.metrics.evaluate`)."""
    if tuple(gt.shape) != tuple(pred.shape):
        raise DataError(f"ground truth is {tuple(gt.shape)} but prediction is {tuple(pred.shape)}")
    g, p = drop_boundary(gt, boundary_px), drop_boundary(pred, boundary_px)
    ov = overlaps_from_instances(g, p)
    hits = match_pairs(ov, threshold)
    gi, pj = ov.gt_index[hits], ov.pred_index[hits]
    gc, pc = g.class_ids, p.class_ids
    matched = np.zeros((len(g.classes), len(p.classes)), np.int64)
    np.add.at(matched, (gc[gi], pc[pj]), 1)
    missed = np.bincount(np.delete(gc, gi), minlength=len(g.classes)).astype(np.int64)
    spurious = np.bincount(np.delete(pc, pj), minlength=len(p.classes)).astype(np.int64)
    return ClassConfusion(float(threshold), tuple(g.classes), tuple(p.classes), matched, missed, spurious)


def class_confusion(gt: Sequence[InstanceSet], pred: Sequence[InstanceSet], *, threshold: float = 0.5,
                    boundary_px: int = 0) -> ClassConfusion:
    """The class confusion summed over paired images (every image must have the same class names)."""
    if len(gt) != len(pred):
        raise DataError(f"{len(gt)} ground-truth images but {len(pred)} predictions")
    if not gt:
        raise DataError("no images to score")
    total = None
    for g, p in zip(gt, pred):
        one = confusion_image(g, p, threshold=threshold, boundary_px=boundary_px)
        total = one if total is None else total + one
    return total
