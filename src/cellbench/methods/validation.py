"""The validation score every method records: pooled F1 at IoU 0.5 on the validation samples.

One definition for the ``val_score`` of a training history (``val_metric``
``"f1@0.5"``): the true positives, false positives and false negatives of each
validation image at IoU >= 0.5 (:mod:`cellbench.matching`, the rule
:mod:`cellbench.metrics` reports with), summed over the images, then
2 TP / (2 TP + FP + FN). ``None`` when there is nothing to match at all.

Two kinds of ground truth, as the methods learn:

* ``"flattened"`` (the default): the annotation flattened by the method's policy
  (one cell per pixel, what a label-image method trains on), matched against
  the predicted label image;
* ``"overlap"``: the instances as annotated, overlaps kept, matched against the
  predicted :class:`~cellbench.instances.InstanceSet` (Mask R-CNN, SAM).

:func:`tiled_overlap_f1` is the score of a method that predicts instances tile by
tile (the detection family, Mask2Former): whole images through the model's tiling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.matching import match, match_labels, overlaps_from_instances, pooled
from cellbench.methods.tiling import predict_tiled

if TYPE_CHECKING:
    from cellbench.methods.base import Method

__all__ = ["pooled_f1", "tiled_overlap_f1", "validation_f1"]

#: The IoU threshold of the validation score.
IOU = 0.5


def pooled_f1(pairs: Iterable[tuple[np.ndarray | InstanceSet, np.ndarray | InstanceSet]]) -> float | None:
    """Pooled F1 at IoU 0.5 of (ground truth, prediction) pairs: two label images, or two InstanceSets.

    >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[3, 3, 0, 0, 0]])
    >>> pooled_f1([(gt, pred), (gt, gt)])  # TP 3, FP 0, FN 1
    0.8571428571428571
    """
    counts = []
    for truth, found in pairs:
        if isinstance(truth, InstanceSet) and isinstance(found, InstanceSet):
            counts.append(match(overlaps_from_instances(truth, found), (IOU,))[0])
        elif isinstance(truth, np.ndarray) and isinstance(found, np.ndarray):
            counts.append(match_labels(truth, found, (IOU,))[0])
        else:
            raise TypeError(f"compare two label images or two InstanceSets, got {type(truth).__name__} and "
                            f"{type(found).__name__}")
    return pooled(counts).f1


def validation_f1(
    samples: Sequence[Sample],
    predict: Callable[[np.ndarray], np.ndarray | InstanceSet],
    *,
    ground_truth: Literal["flattened", "overlap"] = "flattened",
    flatten_policy: str = "priority-last",
) -> float | None:
    """Pooled F1@0.5 of ``predict`` on ``samples``.

    Args:
        samples: the validation samples.
        predict: image -> a label image (``ground_truth="flattened"``) or an InstanceSet (``"overlap"``).
        ground_truth: ``"flattened"``: each sample's instances flattened by ``flatten_policy``;
            ``"overlap"``: the instances as annotated.
        flatten_policy: the policy name (the method config's ``flatten``).

    >>> from cellbench.instances import InstanceSet
    >>> labels = np.array([[1, 1, 0, 2, 2]])
    >>> s = Sample("a", InstanceSet.from_label_image(labels), array=labels.astype(np.uint8))
    >>> validation_f1([s], lambda image: np.zeros(image.shape, np.int32))  # nothing found
    0.0
    >>> validation_f1([s], lambda image: InstanceSet.from_label_image(labels), ground_truth="overlap")
    1.0
    """
    if ground_truth == "overlap":
        return pooled_f1((s.instances, predict(s.load_image())) for s in samples)
    if ground_truth != "flattened":
        raise ValueError(f"ground_truth must be 'flattened' or 'overlap', got {ground_truth!r}")
    policy = policy_from_name(flatten_policy)
    return pooled_f1((flatten(s.instances, policy).labels, predict(s.load_image())) for s in samples)


def tiled_overlap_f1(method: Method, samples: Sequence[Sample]) -> float:
    """Class-agnostic pooled F1 at IoU 0.5 of ``method`` on ``samples``, on the instances as annotated (overlaps
    kept), whole images predicted tile by tile with the model's tiling (:attr:`Method.prediction_tiling`);
    0.0 when there is nothing to match.

    >>> from cellbench.methods.adapters.watershed import WatershedMethod
    >>> labels = np.zeros((8, 8), np.int32); labels[2:5, 2:5] = 1
    >>> s = Sample("a", InstanceSet.from_label_image(labels), array=(labels * 200).astype(np.uint8))
    >>> method = WatershedMethod()
    >>> method.predict = lambda image: InstanceSet.from_label_image(labels)  # finds the one cell
    >>> tiled_overlap_f1(method, [s])
    1.0
    """
    tiling = method.prediction_tiling
    return validation_f1(samples, lambda image: predict_tiled(method.predict, image, tiling),
                         ground_truth="overlap") or 0.0
