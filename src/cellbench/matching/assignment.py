"""One-to-one assignment on sparse overlaps, solved group by group.

Pairs that share no pixel never pair up, so an optimal one-to-one assignment
splits over the connected groups of touching instances. A candidate pair whose
GT and prediction have no other candidate is kept as it is; only groups where
an instance has two or more candidates go through
:func:`scipy.optimize.linear_sum_assignment`, each on its own small matrix.
The matching rule at IoU thresholds (:func:`cellbench.matching.match_pairs`)
and AJI+'s maximal unique pairing both run on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cellbench.matching.overlap import Overlaps

__all__ = ["assign"]

#: cost(weights, candidates) of one group's sub-matrices (0 / False where a pair does not touch): what
#: linear_sum_assignment minimises.
Cost = Callable[[np.ndarray, np.ndarray], np.ndarray]


def assign(ov: Overlaps, candidate: np.ndarray, weight: np.ndarray, cost: Cost) -> np.ndarray:
    """Positions (into the pair arrays of ``ov``, sorted) of the candidate pairs an optimal assignment keeps.

    ``candidate`` flags the pairs that may be kept and ``weight`` gives every
    pair's value (both per pair of ``ov``). Where candidates compete, each
    group of touching instances is assigned by minimising ``cost`` over its
    sub-matrices of weights and candidate flags, and the assigned pairs that
    are candidates are kept.

    >>> ov = Overlaps(np.array([4, 4]), np.array([4]), np.array([0, 1]), np.array([0, 0]), np.array([3, 2]))
    >>> assign(ov, np.array([True, True]), ov.iou, lambda w, c: -w)  # both GT touch the one prediction
    array([0])
    """
    hit = np.flatnonzero(candidate)
    if hit.size == 0:
        return np.zeros(0, np.int64)
    gi, pj = ov.gt_index[hit], ov.pred_index[hit]
    conflict = (np.bincount(gi, minlength=ov.n_gt)[gi] > 1) | (np.bincount(pj, minlength=ov.n_pred)[pj] > 1)
    if not conflict.any():
        return hit
    # scipy is imported here, not at the top: most images never get this far, and importing
    # scipy.optimize costs about a third of a second of every `cellbench evaluate`.
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # Groups of touching instances (over all pairs with any overlap); nodes 0..n_gt-1 are GT.
    n = ov.n_gt + ov.n_pred
    graph = coo_matrix((np.ones(ov.gt_index.size), (ov.gt_index, ov.pred_index + ov.n_gt)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    hard = np.zeros(group.max() + 1, dtype=bool)
    hard[group[gi[conflict]]] = True
    found = [hit[~hard[group[gi]]]]
    pair_group = group[ov.gt_index]
    order = np.argsort(pair_group, kind="stable")
    hard_ids = np.flatnonzero(hard)
    starts = np.searchsorted(pair_group[order], hard_ids, side="left")
    stops = np.searchsorted(pair_group[order], hard_ids, side="right")
    for lo, hi in zip(starts.tolist(), stops.tolist()):
        sel = order[lo:hi]
        rows, r_inv = np.unique(ov.gt_index[sel], return_inverse=True)
        cols, c_inv = np.unique(ov.pred_index[sel], return_inverse=True)
        sub = np.zeros((rows.size, cols.size))
        sub[r_inv, c_inv] = weight[sel]
        sub_hit = np.zeros((rows.size, cols.size), dtype=bool)
        sub_hit[r_inv, c_inv] = candidate[sel]
        where = np.full((rows.size, cols.size), -1, dtype=np.int64)
        where[r_inv, c_inv] = sel
        r, c = linear_sum_assignment(cost(sub, sub_hit))
        ok = sub_hit[r, c]
        found.append(where[r[ok], c[ok]])
    return np.sort(np.concatenate(found))
