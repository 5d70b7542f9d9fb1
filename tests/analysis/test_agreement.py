"""Annotation agreement against brute force on small overlapping sets, and the consensus rule by hand."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from cellbench.analysis import agreement, build_consensus
from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet

SHAPE = (24, 24)


def _rect(y, x, h, w, shape=SHAPE) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + h, x : x + w] = True
    return m


def _set(masks, classes=("cell",), class_ids=None) -> InstanceSet:
    class_ids = class_ids or [0] * len(masks)
    return InstanceSet(shape=SHAPE, instances=tuple(Instance.from_mask(m, class_id=c) for m, c in zip(masks, class_ids)),
                       classes=classes)


def _random_annotations(rng, n_sets=3, n_objects=4):
    """Sets that annotate the same objects with jitter, drop some and add others; instances overlap."""
    base = [(rng.integers(0, 16), rng.integers(0, 16), rng.integers(4, 9), rng.integers(4, 9)) for _ in range(n_objects)]
    sets = []
    for _ in range(n_sets):
        masks = []
        for y, x, h, w in base:
            if rng.random() < 0.25:
                continue
            dy, dx, dh, dw = rng.integers(-1, 2, 4)
            masks.append(_rect(max(0, y + dy), max(0, x + dx), max(1, h + dh), max(1, w + dw)))
        if rng.random() < 0.5:
            masks.append(_rect(*rng.integers(0, 18, 2), *rng.integers(2, 7, 2)))
        order = rng.permutation(len(masks))
        sets.append(_set([masks[k] for k in order]))
    return sets


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _brute_counts(ref: InstanceSet, other: InstanceSet, t: float) -> tuple[int, int, int]:
    """TP = the most one-to-one pairs with IoU >= t over every injective assignment; FP, FN the rest."""
    r = [i.to_full(SHAPE) for i in ref]
    o = [i.to_full(SHAPE) for i in other]
    small, large, swap = (r, o, False) if len(r) <= len(o) else (o, r, True)
    best = 0
    for perm in itertools.permutations(range(len(large)), len(small)):
        pairs = [(small[k], large[p]) for k, p in enumerate(perm)]
        best = max(best, sum(_iou(a, b) >= t for a, b in pairs))
    return best, len(o) - best, len(r) - best


def _brute_consensus(sets: list[InstanceSet], iou: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """The documented rule with full-image masks and plain loops."""
    n = len(sets)
    full = [[i.to_full(SHAPE) for i in s] for s in sets]
    used = [[False] * len(s) for s in sets]
    out = []
    for i in range(n):
        for k in range(len(sets[i])):
            if used[i][k]:
                continue
            group = [(i, k)]
            for j in range(n):
                if j == i:
                    continue
                scores = [(-1.0 if used[j][m] else _iou(full[i][k], full[j][m])) for m in range(len(sets[j]))]
                if scores and max(scores) >= iou:
                    group.append((j, scores.index(max(scores))))
            if 2 * len(group) <= n:
                continue
            for j, m in group:
                used[j][m] = True
            count = sum(full[j][m].astype(int) for j, m in group)
            names = Counter(sets[j].classes[sets[j][m].class_id] for j, m in group)
            out.append((count * 2 > len(group), names.most_common(1)[0][0]))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_pairs_and_consensus_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    images = {f"im{k}": _random_annotations(rng) for k in range(2)}
    names = ["A", "B", "C"]
    annotations = {s: {im: sets[k] for im, sets in images.items()} for k, s in enumerate(names)}
    result = agreement(annotations)
    thresholds = (0.5, 0.75, 0.9)
    assert [(p.reference, p.other) for p in result.pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    d = result.to_dict()
    for pair in d["pairs"]:
        for t in thresholds:
            key = repr(t)
            tot = np.zeros(3, int)
            for row in pair["per_image"]:
                ref, oth = annotations[pair["reference"]][row["image"]], annotations[pair["other"]][row["image"]]
                got = row["by_iou"][key]
                assert (got["tp"], got["fp"], got["fn"]) == _brute_counts(ref, oth, t)
                tot += (got["tp"], got["fp"], got["fn"])
            pooled = pair["by_iou"][key]
            assert (pooled["tp"], pooled["fp"], pooled["fn"]) == tuple(tot)
            assert pooled["ap_dsb"] == (pytest.approx(tot[0] / tot.sum()) if tot.sum() else None)
    for im, sets in images.items():
        expected = _brute_consensus(sets)
        built = result.consensus[im]
        assert len(built) == len(expected)
        for inst, (mask, cls) in zip(built, expected):
            assert np.array_equal(inst.to_full(SHAPE), mask)
            assert built.classes[inst.class_id] == cls
    for entry in d["vs_consensus"]:
        for row in entry["per_image"]:
            got = row["by_iou"]["0.5"]
            expected = _brute_counts(result.consensus[row["image"]], annotations[entry["other"]][row["image"]], 0.5)
            assert (got["tp"], got["fp"], got["fn"]) == expected


def test_consensus_by_hand():
    obj = _rect(2, 2, 6, 6)
    shifted = _rect(2, 3, 6, 6)  # IoU 30/42 with obj
    pair = _rect(12, 12, 5, 5)
    pair_b = _rect(12, 12, 5, 4)  # IoU 20/25
    lone = _rect(18, 2, 4, 4)
    a = _set([obj, pair, lone], classes=("cell", "soma"), class_ids=[0, 1, 0])
    b = _set([shifted, pair_b], classes=("cell", "soma"), class_ids=[0, 0])
    c = _set([obj], classes=("cell", "soma"), class_ids=[0])
    cons = build_consensus([a, b, c])
    assert len(cons) == 2  # the lone instance has 1 of 3 votes
    first, second = cons
    assert np.array_equal(first.to_full(SHAPE), obj)  # pixel majority of obj, shifted, obj
    assert np.array_equal(second.to_full(SHAPE), pair & pair_b)  # two masks: their intersection
    assert cons.classes[second.class_id] == "soma"  # 1 soma vs 1 cell: the candidate's class wins the tie
    # two annotators: both must agree
    assert len(build_consensus([a, b])) == 2 and len(build_consensus([a, c])) == 1


def test_reference_side_and_predictions():
    a = {"x": _set([_rect(0, 0, 5, 5), _rect(10, 10, 5, 5), _rect(0, 15, 4, 4)])}
    b = {"x": _set([_rect(0, 0, 5, 5)])}
    pred = {"x": _set([_rect(10, 10, 5, 5), _rect(20, 20, 3, 3)])}
    given = {"x": _set([_rect(0, 0, 5, 5), _rect(10, 10, 5, 5)])}
    d = agreement({"A": a, "B": b}, consensus=given, predictions={"P": pred}).to_dict()
    pair = d["pairs"][0]
    assert (pair["reference"], pair["other"]) == ("A", "B")
    p = pair["by_iou"]["0.5"]
    assert (p["tp"], p["fp"], p["fn"], p["recall"], p["precision"]) == (1, 0, 2, pytest.approx(1 / 3), 1.0)
    assert p["ap_dsb"] == pytest.approx(1 / 3)
    vs = {e["other"]: e for e in d["vs_consensus"]}
    assert vs["P"]["kind"] == "prediction" and vs["P"]["reference"] == "consensus"
    assert vs["P"]["by_iou"]["0.5"]["ap_dsb"] == pytest.approx(1 / 3)
    assert vs["A"]["by_iou"]["0.9"]["ap_dsb"] == pytest.approx(2 / 3)
    assert d["consensus_rule"] == "given (not built)"
    assert set(d) >= {"pairs", "vs_consensus", "consensus_rule"}


def test_mismatched_images_name_the_set():
    a = {"x": _set([_rect(0, 0, 5, 5)])}
    with pytest.raises(DataError, match="B.*missing"):
        agreement({"A": a, "B": {"y": a["x"]}})
    other_shape = InstanceSet(shape=(10, 10))
    with pytest.raises(DataError, match="different image shapes"):
        build_consensus([a["x"], other_shape])
