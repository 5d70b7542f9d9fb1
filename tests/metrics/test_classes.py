"""Classified instances: per-class scores follow COCO (wrong class = FP + FN); the confusion table counts
class-agnostic matches by GT class x predicted class."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.metrics import evaluate
from cellbench.metrics.classes import class_confusion, confusion_image


def square(y, x, side=4, **fields):
    mask = np.zeros((20, 20), bool)
    mask[y:y + side, x:x + side] = True
    return Instance.from_mask(mask, **fields)


def two_class_pair():
    """GT: A at (1,1), B at (1,10), B at (10,1) overlapping nothing; prediction: the A cell called B,
    the first B right, the second B missed, plus a spurious A."""
    gt = InstanceSet((20, 20), (square(1, 1, class_id=0), square(1, 10, class_id=1), square(10, 1, class_id=1)),
                     classes=("A", "B"))
    pred = InstanceSet((20, 20), (square(1, 1, class_id=1, score=0.9), square(1, 10, class_id=1, score=0.8),
                                  square(12, 12, class_id=0, score=0.5)), classes=("A", "B"))
    return gt, pred


def test_confusion_counts_matched_pairs_by_class_and_the_unmatched():
    gt, pred = two_class_pair()
    table = confusion_image(gt, pred, threshold=0.5).to_dict()
    assert table["matched"] == {"A": {"A": 0, "B": 1}, "B": {"A": 0, "B": 1}}
    assert table["missed"] == {"A": 0, "B": 1} and table["spurious"] == {"A": 1, "B": 0}
    assert table["class_accuracy"] == 0.5


def test_per_class_scores_count_a_wrong_class_as_fp_and_fn():
    gt, pred = two_class_pair()
    result = evaluate([gt], [pred], thresholds=[0.5], per_class=True).to_dict()
    a, b = (result["per_class"][c]["pooled"]["0.5"] for c in ("A", "B"))
    assert (a["tp"], a["fp"], a["fn"]) == (0, 1, 1)  # the spurious A, and the A GT called B
    assert (b["tp"], b["fp"], b["fn"]) == (1, 1, 1)  # FP: the A cell called B; FN: the missed B
    # class-agnostic: 2 matched, 1 missed, 1 spurious; the table's pairs are exactly these
    agnostic = result["pooled"]["0.5"]
    assert (agnostic["tp"], agnostic["fp"], agnostic["fn"]) == (2, 1, 1)


def test_confusion_adds_over_images_and_single_class_predictions_are_one_column():
    gt, pred = two_class_pair()
    total = class_confusion([gt, gt], [pred, pred], threshold=0.5)
    assert total.matched.tolist() == [[0, 2], [0, 2]]
    flat = pred.replace(instances=tuple(i.replace(class_id=0) for i in pred), classes=("cell",))
    one = confusion_image(gt, flat, threshold=0.5).to_dict()
    assert one["matched"] == {"A": {"cell": 1}, "B": {"cell": 1}}
    assert one["class_accuracy"] is None  # no class name in common: no classification to judge


def test_boundary_rule_and_bad_input():
    gt, pred = two_class_pair()
    framed = confusion_image(gt, pred, threshold=0.5, boundary_px=2)  # only the spurious A is off the frame
    assert framed.matched.sum() == 0 and framed.missed.tolist() == [0, 0] and framed.spurious.tolist() == [1, 0]
    with pytest.raises(DataError, match="2 ground-truth images but 1"):
        class_confusion([gt, gt], [pred])
    with pytest.raises(DataError, match=r"\(20, 20\) but prediction is \(10, 10\)"):
        confusion_image(gt, InstanceSet((10, 10)))
