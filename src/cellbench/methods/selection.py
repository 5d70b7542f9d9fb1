"""A fast F1 at IoU > 0.5 for tuning and model selection inside ``train``.

Methods pick parameters and epochs by a score on their own training or
validation images; that inner loop needs a score that is cheap and exact, not
the full report of :mod:`cellbench.metrics`. For an IoU threshold of 0.5 or
more, a predicted instance can match at most one true instance (two
instances with IoU > 0.5 to the same object would have to overlap by more
than half of each other), so the optimal matching is simply every pair with
IoU above the threshold: no assignment problem to solve.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["f1_from_counts", "match_counts", "match_counts_by_iou"]


def match_counts(gt: np.ndarray, pred: np.ndarray, *, iou: float = 0.5) -> tuple[int, int, int]:
    """(true positives, number of true objects, number of predicted objects) of two label images.

    Only thresholds >= 0.5 are accepted (the matching is then unique).

    >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[3, 3, 3, 0, 4]])
    >>> match_counts(gt, pred)
    (1, 2, 2)
    """
    return match_counts_by_iou(gt, pred, (iou,))[0]


def match_counts_by_iou(gt: np.ndarray, pred: np.ndarray, ious: Sequence[float]) -> list[tuple[int, int, int]]:
    """:func:`match_counts` at several IoU thresholds (all >= 0.5) from one overlap table.

    >>> match_counts_by_iou(np.array([[1, 1, 1, 0]]), np.array([[1, 1, 0, 0]]), (0.5, 0.7))
    [(1, 1, 1), (0, 1, 1)]
    """
    if not ious or min(ious) < 0.5:
        raise ValueError(f"IoU thresholds must be >= 0.5 (unique matching), got {list(ious)}")
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {gt.shape} vs {pred.shape}")
    g_ids, g_inv = np.unique(gt, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    g_inv, p_inv = g_inv.ravel(), p_inv.ravel()
    n_gt = int(np.count_nonzero(g_ids))
    n_pred = int(np.count_nonzero(p_ids))
    g_area = np.bincount(g_inv, minlength=len(g_ids))
    p_area = np.bincount(p_inv, minlength=len(p_ids))
    both = (gt.ravel() != 0) & (pred.ravel() != 0)
    pairs, inter = np.unique(g_inv[both].astype(np.int64) * len(p_ids) + p_inv[both], return_counts=True)
    gi, pi = np.divmod(pairs, len(p_ids))
    union = g_area[gi] + p_area[pi] - inter
    return [(int(np.count_nonzero(inter > t * union)), n_gt, n_pred) for t in ious]


def f1_from_counts(counts: Iterable[tuple[int, int, int]]) -> float:
    """F1 of counts pooled over images (TP, FP and FN summed); 1.0 when there is nothing to find.

    >>> f1_from_counts([(1, 2, 2), (2, 2, 2)])
    0.75
    """
    tp = n_gt = n_pred = 0
    for t, g, p in counts:
        tp, n_gt, n_pred = tp + t, n_gt + g, n_pred + p
    if n_gt + n_pred == 0:
        return 1.0
    return 2.0 * tp / (n_gt + n_pred)
