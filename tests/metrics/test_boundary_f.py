"""Boundary F-score: outlines by hand, against a brute-force nearest-distance reference, and through evaluate."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.instances import Instance, InstanceSet
from cellbench.metrics import evaluate
from cellbench.metrics.boundary_f import BoundaryF, boundary_parts

from .helpers import dsb_pair


def _outline_pixels(s: InstanceSet) -> set[tuple[int, int]]:
    """Pixels of an instance with a 4-neighbour outside its mask (by brute force), all instances together."""
    found = set()
    for inst in s:
        full = np.pad(inst.to_full(s.shape), 1)
        for y, x in zip(*np.nonzero(full)):
            if not (full[y - 1, x] and full[y + 1, x] and full[y, x - 1] and full[y, x + 1]):
                found.add((int(y) - 1, int(x) - 1))
    return found


def _reference(gt: InstanceSet, pred: InstanceSet, tolerance: float) -> tuple[int, int, int, int]:
    g, p = _outline_pixels(gt), _outline_pixels(pred)

    def matched(a, b):
        if not b:
            return 0
        bb = np.array(sorted(b), dtype=float)
        return sum(1 for y, x in a if np.min((bb[:, 0] - y) ** 2 + (bb[:, 1] - x) ** 2) <= tolerance**2)

    return matched(p, g), len(p), matched(g, p), len(g)


@pytest.mark.parametrize("tolerance", [0, 1, 1.5, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_counts_equal_a_brute_force_reference(seed, tolerance):
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(2):  # overlapping random rectangles and discs on a 40 x 50 image, some at the image edge
        instances = []
        for _ in range(rng.integers(0, 7)):
            h, w = rng.integers(2, 15, 2)
            yy, xx = np.ogrid[:h, :w]
            disc = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) <= min(h, w) / 2
            mask = np.ones((h, w), bool) if rng.random() < 0.5 else disc
            offset = (int(rng.integers(0, 41 - h)), int(rng.integers(0, 51 - w)))
            instances.append(Instance.from_mask(mask, offset=offset))
        sets.append(InstanceSet((40, 50), tuple(instances)))
    got = boundary_parts(*sets, tolerance=tolerance)
    assert (got.pred_matched, got.pred, got.gt_matched, got.gt) == _reference(*sets, tolerance)


def test_perfect_and_empty_cases():
    gt, _ = dsb_pair(0)
    s = InstanceSet.from_label_image(gt)
    assert boundary_parts(s, s).to_dict() == {"bf_precision": 1.0, "bf_recall": 1.0, "bf": 1.0}
    empty = s.replace(instances=())
    assert boundary_parts(s, empty).to_dict() == {"bf_precision": None, "bf_recall": 0.0, "bf": 0.0}
    assert boundary_parts(empty, empty).to_dict() == {"bf_precision": None, "bf_recall": None, "bf": None}


def test_evaluate_reports_it_per_image_and_pooled():
    pairs = [dsb_pair(k) for k in range(3)]
    gts = [InstanceSet.from_label_image(g) for g, _ in pairs]
    preds = [InstanceSet.from_label_image(p) for _, p in pairs]
    res = evaluate(gts, preds, thresholds=[0.5], metrics=["bf"]).to_dict()
    parts = [boundary_parts(g, p) for g, p in zip(gts, preds)]
    total = sum(parts[1:], parts[0])
    assert [r["bf"] for r in res["per_image"]] == [p.to_dict()["bf"] for p in parts]
    assert res["pooled"]["0.5"]["bf"] == total.to_dict()["bf"]
    assert res["image_mean"]["0.5"]["bf"] == pytest.approx(np.mean([p.to_dict()["bf"] for p in parts]))
    assert "2 px" in res["settings"]["metrics"]["bf"]["convention"]
    # two label images take the same instances
    labels = evaluate([g for g, _ in pairs], [p for _, p in pairs], thresholds=[0.5], metrics=["bf"]).to_dict()
    assert labels["pooled"] == res["pooled"]
    strict = evaluate(gts, preds, thresholds=[0.5], metrics=[BoundaryF(tolerance=0)]).to_dict()
    assert strict["pooled"]["0.5"]["bf"] < res["pooled"]["0.5"]["bf"]
