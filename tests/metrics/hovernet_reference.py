"""HoVer-Net's AJI, AJI+ and PQ (``metrics/stats_utils.py``: get_fast_aji, get_fast_aji_plus, get_fast_pq),
rewritten densely for the tests from their definitions: every (GT, prediction) pair's intersection and union,
pairs ranked by ``inter / (union + 1e-6)`` as HoVer-Net ranks them, SQ over ``TP + 1e-6`` as HoVer-Net divides.

Written as plainly as possible and independently of cellbench: label ids are taken in sorted order, as
HoVer-Net takes them after ``remap_label``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def _tables(true: np.ndarray, pred: np.ndarray):
    t_ids = [i for i in np.unique(true) if i != 0]
    p_ids = [i for i in np.unique(pred) if i != 0]
    t_masks = [true == i for i in t_ids]
    p_masks = [pred == i for i in p_ids]
    inter = np.zeros((len(t_ids), len(p_ids)))
    union = np.zeros((len(t_ids), len(p_ids)))
    for a, tm in enumerate(t_masks):
        for b, pm in enumerate(p_masks):
            i = np.count_nonzero(tm & pm)
            if i:
                inter[a, b] = i
                union[a, b] = np.count_nonzero(tm) + np.count_nonzero(pm) - i
    t_area = np.array([np.count_nonzero(m) for m in t_masks], dtype=np.float64)
    p_area = np.array([np.count_nonzero(m) for m in p_masks], dtype=np.float64)
    return inter, union, t_area, p_area


def _index(inter, union, t_area, p_area, rows, cols) -> float:
    c = inter[rows, cols].sum()
    u = union[rows, cols].sum()
    u += t_area[np.setdiff1d(np.arange(t_area.size), rows)].sum()
    u += p_area[np.setdiff1d(np.arange(p_area.size), cols)].sum()
    return c / u


def hovernet_aji(true: np.ndarray, pred: np.ndarray) -> float:
    """Each GT with the prediction of highest ranking IoU (first on ties); a prediction may be used again."""
    inter, union, t_area, p_area = _tables(true, pred)
    rank = inter / (union + 1.0e-6)
    best = rank.argmax(axis=1)
    rows = np.flatnonzero(rank.max(axis=1) > 0)
    return _index(inter, union, t_area, p_area, rows, best[rows])


def hovernet_aji_plus(true: np.ndarray, pred: np.ndarray) -> float:
    """One-to-one pairs maximising the summed ranking IoU over the whole matrix, pairs without overlap dropped."""
    inter, union, t_area, p_area = _tables(true, pred)
    rank = inter / (union + 1.0e-6)
    r, c = linear_sum_assignment(-rank)
    keep = rank[r, c] > 0
    return _index(inter, union, t_area, p_area, r[keep], c[keep])


def hovernet_pq(true: np.ndarray, pred: np.ndarray) -> tuple[int, float, float, float]:
    """(TP, DQ, SQ, PQ) with pairs of IoU > 0.5."""
    inter, union, t_area, p_area = _tables(true, pred)
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    matched = iou > 0.5
    tp = int(matched.sum())
    fp, fn = p_area.size - tp, t_area.size - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = iou[matched].sum() / (tp + 1.0e-6)
    return tp, dq, sq, dq * sq
