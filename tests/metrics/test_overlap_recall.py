"""Recall of overlapping vs non-overlapping GT: hand-made cases with known answers, and random cases
against a brute force (pixel-by-pixel overlap flags, exhaustive search of every one-to-one matching)."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet, PriorityFlatten, flatten
from cellbench.metrics import evaluate
from cellbench.metrics.overlap_recall import SubsetRecall, gt_found, overlap_recall, overlap_recall_image

from .helpers import dense_iou, jitter, random_instances

SHAPE = (16, 16)


def box(y, x, h, w, shape=SHAPE):
    mask = np.zeros(shape, bool)
    mask[y:y + h, x:x + w] = True
    return Instance.from_mask(mask)


def test_overlapping_and_non_overlapping_parts_of_a_hand_made_image():
    # a and b share a 2 x 2 corner; c and d overlap nothing; the prediction finds a, c and a false object.
    a, b, c, d = box(3, 3, 4, 4), box(5, 5, 4, 4), box(11, 2, 3, 3), box(2, 11, 3, 3)
    gt = InstanceSet(SHAPE, (a, b, c, d))
    pred = InstanceSet(SHAPE, (box(3, 3, 4, 4), box(11, 2, 3, 3), box(12, 12, 2, 2)))
    r = overlap_recall_image(gt, pred)
    assert (r.overlapping.found, r.overlapping.total) == (1, 2)
    assert (r.non_overlapping.found, r.non_overlapping.total) == (1, 2)
    assert (r.counts.tp, r.counts.fp, r.counts.fn) == (2, 1, 2)
    assert r.to_dict()["overlapping"] == {"found": 1, "n": 2, "recall": 0.5}


def test_flattened_gt_is_scored_as_clipped_and_keeps_the_annotations_overlap_flag():
    # priority-last: b covers a's corner (a keeps 12 of 16 px); e lies inside f, which comes later: e is lost.
    a, b = box(3, 3, 4, 4), box(5, 5, 4, 4)
    e, f = box(11, 11, 2, 2), box(10, 10, 5, 5)
    gt = InstanceSet(SHAPE, (a, b, e, f))
    # The prediction is a as annotated: IoU 12/16 with flattened a.
    pred = InstanceSet(SHAPE, (box(3, 3, 4, 4),))
    flat = overlap_recall_image(gt, pred, flatten_policy=PriorityFlatten("last"))
    assert flat.ground_truth == "flattened" and flat.flatten_policy == "priority-last"
    assert (flat.overlapping.found, flat.overlapping.total) == (1, 3)  # e is gone, f has a hole, still overlapping
    assert flat.non_overlapping.total == 0 and flat.non_overlapping.recall is None
    # At IoU 0.8 the clipped a is no longer found, though a as annotated is.
    assert overlap_recall_image(gt, pred, threshold=0.8, flatten_policy=PriorityFlatten("last")).overlapping.found == 0
    assert overlap_recall_image(gt, pred, threshold=0.8).overlapping.found == 1
    # priority-first: a keeps all its pixels; e keeps its own, f loses them.
    first = overlap_recall_image(gt, pred, threshold=0.8, flatten_policy=PriorityFlatten("first"))
    assert (first.overlapping.found, first.overlapping.total) == (1, 4)


def test_boundary_rule_drops_frame_instances_after_overlap_is_decided():
    # a touches the frame; b overlaps only a: b stays "overlapping" though a is not scored.
    a, b, c = box(0, 0, 4, 4), box(3, 3, 4, 4), box(10, 10, 3, 3)
    gt = InstanceSet(SHAPE, (a, b, c))
    pred = InstanceSet(SHAPE, (box(0, 0, 4, 4), box(3, 3, 4, 4)))
    r = overlap_recall_image(gt, pred, boundary_px=2)
    assert (r.overlapping.found, r.overlapping.total) == (1, 1)
    assert (r.non_overlapping.found, r.non_overlapping.total) == (0, 1)
    assert (r.counts.tp, r.counts.fp, r.counts.fn) == (1, 0, 1)  # the frame prediction is dropped too


def _brute_overlapping(gt: InstanceSet) -> np.ndarray:
    full = [i.to_full(gt.shape) for i in gt]
    return np.array([any((full[i] & full[j]).any() for j in range(len(full)) if j != i) for i in range(len(full))],
                    dtype=bool)


def _brute_found(iou: np.ndarray, t: float) -> np.ndarray:
    """The matching's definition searched exhaustively: most pairs at IoU >= t, then the largest summed IoU of
    all assigned pairs; returns which GT rows the best assignment pairs at IoU >= t."""
    n_gt, n_pred = iou.shape
    best: list = [(-1, -1.0), ()]

    def search(row: int, used: frozenset, hits: int, total: float, pairs: tuple) -> None:
        if row == n_gt:
            key = (hits, round(total, 12))
            if key > best[0]:
                best[0], best[1] = key, pairs
            return
        search(row + 1, used, hits, total, pairs)
        for col in range(n_pred):
            if col not in used and iou[row, col] > 0:
                ok = iou[row, col] >= t
                search(row + 1, used | {col}, hits + ok, total + iou[row, col], pairs + ((row, ok),))

    search(0, frozenset(), 0, 0.0, ())
    found = np.zeros(n_gt, dtype=bool)
    for row, ok in best[1]:
        found[row] = ok
    return found


def _paint_last(gt: InstanceSet) -> np.ndarray:
    labels = np.zeros(gt.shape, np.int32)
    for k, inst in enumerate(gt):
        labels[inst.to_full(gt.shape)] = k + 1
    return labels


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("t", [0.3, 0.5])
def test_random_images_match_brute_force(seed, t):
    rng = np.random.default_rng(seed)
    gt = random_instances(rng, shape=(24, 28), n=6)
    pred = jitter(rng, gt, n_extra=2)
    flags = _brute_overlapping(gt)
    found = _brute_found(dense_iou(gt, pred), t)
    r = overlap_recall_image(gt, pred, threshold=t)
    assert (r.overlapping.found, r.overlapping.total) == (int(found[flags].sum()), int(flags.sum()))
    assert (r.non_overlapping.found, r.non_overlapping.total) == (int(found[~flags].sum()), int((~flags).sum()))
    assert r.counts.tp == int(found.sum())

    # Flattened by painting in annotation order (the last wins); each survivor keeps its annotation's flag.
    labels = _paint_last(gt)
    ids = [k for k in range(1, len(gt) + 1) if (labels == k).any()]
    flat = InstanceSet(gt.shape, tuple(Instance.from_mask(labels == k) for k in ids))
    flat_flags = flags[np.array(ids) - 1]
    flat_found = _brute_found(dense_iou(flat, pred), t)
    rf = overlap_recall_image(gt, pred, threshold=t, flatten_policy=PriorityFlatten("last"))
    assert (rf.overlapping.found, rf.overlapping.total) == (int(flat_found[flat_flags].sum()), int(flat_flags.sum()))
    assert (rf.non_overlapping.found, rf.non_overlapping.total) == (int(flat_found[~flat_flags].sum()),
                                                                   int((~flat_flags).sum()))


def test_pooled_counts_are_those_of_evaluate_on_both_ground_truths():
    rng = np.random.default_rng(7)
    gts = [random_instances(rng, shape=(30, 34), n=9) for _ in range(3)]
    preds = [jitter(rng, g) for g in gts]
    policy = PriorityFlatten("last")
    for kind, ground in (("overlap", gts), ("flattened", [flatten(g, policy).to_instance_set() for g in gts])):
        r = overlap_recall(gts, preds, boundary_px=2, flatten_policy=policy if kind == "flattened" else None)
        pooled = evaluate(ground, preds, thresholds=[0.5], boundary_px=2).pooled(0.5)
        assert (r.counts.tp, r.counts.fp, r.counts.fn) == (pooled.tp, pooled.fp, pooled.fn)
        assert r.overlapping.total + r.non_overlapping.total == pooled.tp + pooled.fn
        assert r.overlapping.found + r.non_overlapping.found == pooled.tp
        assert r.counts.f1 == pooled.f1
    one = [overlap_recall_image(g, p) for g, p in zip(gts, preds)]
    total = overlap_recall(gts, preds)
    assert total.overlapping == SubsetRecall(sum(o.overlapping.found for o in one),
                                             sum(o.overlapping.total for o in one))


def test_gt_found_on_empty_sides_and_bad_input():
    empty = InstanceSet(SHAPE)
    gt = InstanceSet(SHAPE, (box(3, 3, 4, 4),))
    found, counts = gt_found(gt, empty, 0.5)
    assert found.tolist() == [False] and (counts.tp, counts.fn) == (0, 1)
    r = overlap_recall_image(empty, empty)
    assert r.overlapping.recall is None and r.non_overlapping.recall is None and r.counts.f1 is None
    with pytest.raises(DataError, match="2 ground-truth images but 1"):
        overlap_recall([gt, gt], [gt])
    with pytest.raises(DataError, match="no images"):
        overlap_recall([], [])
    with pytest.raises(DataError, match="IoU threshold"):
        overlap_recall_image(gt, gt, threshold=0)
    with pytest.raises(DataError, match="prediction is"):
        overlap_recall_image(gt, InstanceSet((8, 8)))
    with pytest.raises(DataError, match="cannot add"):
        overlap_recall_image(gt, gt) + overlap_recall_image(gt, gt, flatten_policy=PriorityFlatten("last"))
