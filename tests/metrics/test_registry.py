"""The metric registration: names, defaults, a metric of one's own passed in, and what the evaluator reads."""

from dataclasses import dataclass

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.metrics import (
    DEFAULT_METRICS,
    METRICS,
    CocoMetric,
    Evaluator,
    ImagePair,
    Metric,
    count_ratios,
    evaluate,
    metric_named,
    resolve_metrics,
)

from .helpers import dsb_pair


def test_every_metric_is_described_and_named_once():
    names = [m.name for m in METRICS]
    assert len(set(names)) == len(names)
    values = [v for m in METRICS for v in m.averaged]
    assert len(set(values)) == len(values)  # no two families write the same value
    for m in METRICS:
        assert m.title and m.convention and metric_named(m.name) is m
        assert set(m.spread) <= set(m.averaged)
    assert set(count_ratios()) == {"precision", "recall", "f1", "ap_dsb"}


def test_resolve_names_objects_and_shorthands():
    assert [m.name for m in resolve_metrics()] == list(DEFAULT_METRICS)
    assert [m.name for m in resolve_metrics(["aji"])] == ["matching", "aji"]
    (coco,) = [m for m in resolve_metrics(["coco"], max_dets=7) if isinstance(m, CocoMetric)]
    assert coco.max_dets == 7
    assert resolve_metrics([CocoMetric(max_dets=5)], coco=True)[1].max_dets == 5
    with pytest.raises(DataError, match="unknown metric 'ajj'.*aji_plus"):
        resolve_metrics(["ajj"])
    with pytest.raises(DataError, match="named twice"):
        resolve_metrics(["dice", "dice"])


@dataclass(frozen=True)
class _Parts:
    n: int
    images: int

    def __add__(self, other):
        return _Parts(self.n + other.n, self.images + other.images)


@dataclass(frozen=True)
class PredictedPerImage(Metric):
    """A metric of one's own: predicted instances per image (one module and its test, nothing else)."""

    name = "predicted_per_image"
    title = "predicted instances per image"
    convention = "no matching"
    averaged = ("predicted",)
    zero = _Parts(0, 0)

    def image(self, pair: ImagePair) -> _Parts:
        return _Parts(pair.overlaps.n_pred, 1)

    def values(self, part: _Parts) -> dict:
        return {"predicted": part.n / part.images if part.images else None}


def test_a_metric_of_ones_own_is_passed_in():
    pairs = [dsb_pair(0), dsb_pair(1)]
    res = evaluate([g for g, _ in pairs], [p for _, p in pairs], thresholds=[0.5, 0.9],
                   metrics=["matching", PredictedPerImage()], per_class=False).to_dict()
    n_pred = [len(np.unique(p)) - 1 for _, p in pairs]
    assert [r["predicted"] for r in res["per_image"]] == n_pred
    assert res["pooled"]["0.9"]["predicted"] == np.mean(n_pred) == res["image_mean"]["0.5"]["predicted"]
    assert res["settings"]["metrics"]["predicted_per_image"]["convention"] == "no matching"


def test_default_result_shape_is_unchanged():
    gt, pred = dsb_pair(0)
    ev = Evaluator(thresholds=(0.5,))
    ev.update(gt, pred, name="a")
    d = ev.compute().to_dict()
    assert list(d["per_image"][0]) == ["image", "n_gt", "n_pred", "dice", "by_iou"]
    assert list(d["image_mean"]["0.5"]) == [
        "precision", "precision_median", "precision_std", "recall", "recall_median", "recall_std", "f1",
        "f1_median", "f1_std", "ap_dsb", "ap_dsb_median", "ap_dsb_std", "pq", "mean_matched_iou", "dice",
        "dice_median", "dice_std", "n_images"]
    assert list(d["pooled"]["0.5"]) == ["tp", "fp", "fn", "precision", "recall", "f1", "ap_dsb", "pq",
                                        "mean_matched_iou"]
    assert list(d["settings"]["metrics"]) == ["matching", "dice"]


def test_per_class_scores_every_metric_for_each_class():
    from cellbench.instances import InstanceSet

    gt, pred = dsb_pair(2)
    g, p = InstanceSet.from_label_image(gt), InstanceSet.from_label_image(pred)
    g = g.replace(classes=("a", "b"), instances=tuple(i.replace(class_id=k % 2) for k, i in enumerate(g)))
    p = p.replace(classes=("a", "b"), instances=tuple(i.replace(class_id=k % 2) for k, i in enumerate(p)))
    d = evaluate([g], [p], thresholds=[0.5], per_class=True, metrics=["aji", "pq_canonical"]).to_dict()
    assert set(d["per_class"]) == {"a", "b", "macro"}
    assert {"aji", "pq_canonical", "f1"} <= set(d["per_class"]["macro"]["pooled"]["0.5"])
    macro = d["per_class"]["macro"]["pooled"]["0.5"]["aji"]
    assert macro == pytest.approx(np.mean([d["per_class"][c]["pooled"]["0.5"]["aji"] for c in "ab"]))
