"""Recall of the ground-truth cells that overlap another cell, and of those that do not.

The Glioma C6 paper trains Cellpose and MediarFormer on flattened masks
(each pixel given to one cell) and YOLO on the overlapping annotations, and
scores every method against both (its Tables 2 and 4). What flattening costs
shows where the cells overlap: this module splits the ground truth into the
instances that share a pixel with another GT instance
(:meth:`~cellbench.instances.InstanceSet.overlapping`) and those that do not,
and reports the recall of each part at one IoU threshold.

Rules, so the numbers mean one thing:

* **One matching.** GT and predictions are matched once, every instance
  included, with the rule of :mod:`cellbench.matching` (optimal one-to-one,
  TP when IoU >= t); a GT instance is *found* when that matching pairs it.
  Each part's recall is its found count over its size, so the two parts add
  up to the overall recall, and the overall F1 is the one
  :func:`~cellbench.metrics.evaluate` reports.
* **Overlap is a property of the annotation.** A GT instance is
  *overlapping* when it shares a pixel with another instance of the original
  (overlapping) ground truth of its image, the whole image considered.
* **Against flattened GT** (``flatten=`` a policy), each instance is scored as
  the flattening left it (clipped by the instances that won its shared
  pixels; instances left with no pixel are gone), and keeps the overlap flag
  of the annotation it came from: the paper's Table 4 view, where the cells
  that overlapped are what flattening changed.
* **Boundary rule** (``boundary_px``): instances with a pixel in the frame are
  removed from GT and prediction independently before matching, as
  :func:`~cellbench.metrics.evaluate` does; against flattened GT the frame
  test applies to the flattened instances, again as ``evaluate`` does.
* Sums over images are pooled (found and total summed, then the ratio), as
  the paper's tables pool TP, FP and FN.

>>> import numpy as np
>>> from cellbench.instances import Instance, InstanceSet
>>> def box(y, x, h, w):
...     m = np.zeros((12, 12), bool); m[y:y + h, x:x + w] = True
...     return Instance.from_mask(m)
>>> gt = InstanceSet((12, 12), (box(0, 0, 4, 4), box(2, 2, 4, 4), box(8, 8, 3, 3)))
>>> pred = InstanceSet((12, 12), (box(0, 0, 4, 4), box(8, 8, 3, 3)))
>>> r = overlap_recall_image(gt, pred)
>>> r.overlapping.found, r.overlapping.total, r.non_overlapping.recall
(1, 2, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import FlattenPolicy, InstanceSet, flatten
from cellbench.matching import Counts, match_pairs, overlaps_from_instances
from cellbench.metrics.boundary import touches_frame

__all__ = ["OverlapRecall", "SubsetRecall", "gt_found", "overlap_recall", "overlap_recall_image"]


@dataclass(frozen=True)
class SubsetRecall:
    """How many GT instances of one subset the matching found, out of how many.

    >>> SubsetRecall(3, 4).recall, SubsetRecall(0, 0).recall
    (0.75, None)
    """

    found: int
    total: int

    @property
    def recall(self) -> float | None:
        """found / total; None for an empty subset (nothing to find is neither success nor failure)."""
        return self.found / self.total if self.total else None

    def __add__(self, other: SubsetRecall) -> SubsetRecall:
        return SubsetRecall(self.found + other.found, self.total + other.total)

    def to_dict(self) -> dict:
        return {"found": int(self.found), "n": int(self.total), "recall": self.recall}


@dataclass(frozen=True)
class OverlapRecall:
    """Recall at ``threshold`` of the overlapping and the non-overlapping GT, and the overall counts.

    Attributes:
        threshold: the IoU a matched pair needs.
        ground_truth: ``"overlap"`` (the annotation as it is) or ``"flattened"``.
        flatten_policy: the policy that flattened the GT (None for ``overlap``).
        overlapping, non_overlapping: the two parts of the GT.
        counts: TP / FP / FN of the whole image(s): the overall precision, recall and F1.
    """

    threshold: float
    ground_truth: str
    flatten_policy: str | None
    overlapping: SubsetRecall
    non_overlapping: SubsetRecall
    counts: Counts

    def __add__(self, other: OverlapRecall) -> OverlapRecall:
        if (self.threshold, self.ground_truth, self.flatten_policy) != (
                other.threshold, other.ground_truth, other.flatten_policy):
            raise DataError(f"cannot add overlap recalls at IoU {self.threshold} on {self.ground_truth} GT and at "
                            f"IoU {other.threshold} on {other.ground_truth} GT")
        return OverlapRecall(self.threshold, self.ground_truth, self.flatten_policy,
                             self.overlapping + other.overlapping, self.non_overlapping + other.non_overlapping,
                             self.counts + other.counts)

    def to_dict(self) -> dict:
        return {
            "iou_threshold": float(self.threshold),
            "ground_truth": self.ground_truth,
            "flatten_policy": self.flatten_policy,
            "overlapping": self.overlapping.to_dict(),
            "non_overlapping": self.non_overlapping.to_dict(),
            "all": self.counts.to_dict(),
            "rule": "one class-agnostic optimal matching of all instances (TP when IoU >= threshold); a GT instance "
                    "is overlapping when it shares a pixel with another instance of the original annotation",
        }


def gt_found(gt: InstanceSet, pred: InstanceSet, threshold: float) -> tuple[np.ndarray, Counts]:
    """Which GT instances the matching at ``threshold`` pairs with a prediction, and the image's counts.

    >>> import numpy as np
    >>> gt = InstanceSet.from_label_image(np.array([[1, 1, 0, 2, 2]]))
    >>> pred = InstanceSet.from_label_image(np.array([[1, 1, 3, 0, 0]]))
    >>> found, counts = gt_found(gt, pred, 0.5)
    >>> found.tolist(), (counts.tp, counts.fp, counts.fn)
    ([True, False], (1, 1, 1))
    """
    ov = overlaps_from_instances(gt, pred)
    hits = match_pairs(ov, threshold)
    found = np.zeros(len(gt), dtype=bool)
    found[ov.gt_index[hits]] = True
    tp = int(hits.size)
    return found, Counts(tp=tp, fp=ov.n_pred - tp, fn=ov.n_gt - tp, iou_sum=float(ov.iou[hits].sum()))


def _inside(instances: InstanceSet, px: int) -> np.ndarray:
    """Boolean per instance: no pixel within ``px`` of the image edge (all True for ``px`` = 0)."""
    return np.array([not touches_frame(i, instances.shape, px) for i in instances], dtype=bool)


def _subset(instances: InstanceSet, keep: np.ndarray) -> InstanceSet:
    return instances.replace(instances=tuple(i for i, k in zip(instances, keep) if k))


def overlap_recall_image(
    gt: InstanceSet,
    pred: InstanceSet,
    *,
    threshold: float = 0.5,
    boundary_px: int = 0,
    flatten_policy: FlattenPolicy | None = None,
) -> OverlapRecall:
    """Recall of the overlapping and the non-overlapping GT of one image (against flattened GT when
    ``flatten_policy`` is given)."""
    if not 0.0 < threshold <= 1.0:
        raise DataError(f"IoU threshold must be in (0, 1], got {threshold}")
    if boundary_px < 0:
        raise DataError(f"boundary width must be >= 0 pixels, got {boundary_px}")
    if tuple(gt.shape) != tuple(pred.shape):
        raise DataError(f"ground truth is {tuple(gt.shape)} but prediction is {tuple(pred.shape)}")
    overlapping = gt.overlapping() if len(gt) else np.zeros(0, dtype=bool)
    if flatten_policy is not None:
        labels = flatten(gt, flatten_policy).labels
        # Label k is annotation k - 1, and from_label_image keeps the label as source_id.
        gt = InstanceSet.from_label_image(labels)
        overlapping = overlapping[np.array([i.source_id - 1 for i in gt], dtype=np.int64)]
    keep = _inside(gt, boundary_px)
    gt, overlapping = _subset(gt, keep), overlapping[keep]
    pred = _subset(pred, _inside(pred, boundary_px))
    found, counts = gt_found(gt, pred, threshold)
    return OverlapRecall(
        threshold=float(threshold),
        ground_truth="overlap" if flatten_policy is None else "flattened",
        flatten_policy=None if flatten_policy is None else flatten_policy.name,
        overlapping=SubsetRecall(int(found[overlapping].sum()), int(overlapping.sum())),
        non_overlapping=SubsetRecall(int(found[~overlapping].sum()), int((~overlapping).sum())),
        counts=counts,
    )


def overlap_recall(
    gt: Sequence[InstanceSet],
    pred: Sequence[InstanceSet],
    *,
    threshold: float = 0.5,
    boundary_px: int = 0,
    flatten_policy: FlattenPolicy | None = None,
) -> OverlapRecall:
    """:func:`overlap_recall_image` pooled over paired images (found and totals summed, then the ratios)."""
    if len(gt) != len(pred):
        raise DataError(f"{len(gt)} ground-truth images but {len(pred)} predictions")
    if not gt:
        raise DataError("no images to score")
    parts = [overlap_recall_image(g, p, threshold=threshold, boundary_px=boundary_px, flatten_policy=flatten_policy)
             for g, p in zip(gt, pred)]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total
