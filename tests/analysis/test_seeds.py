"""Scores across seeds: exact means and sample sds, grouping, one seed's bootstrap interval, bad rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cellbench.analysis import (
    SEED_METRICS,
    aggregate_seeds,
    bootstrap_interval,
    image_counts,
    mean_sd_text,
    seed_rows,
    seed_spread,
)
from cellbench.errors import DataError

BASE = {"dataset": "dsb", "task": "nuclei", "method": "unet", "regime": "all", "split": "test",
        "ground_truth": "overlap", "boundary_px": 0}


def _per_image(counts):
    return [{"image": f"img{k}", "by_iou": {"0.5": {"tp": tp, "fp": fp, "fn": fn}}}
            for k, (tp, fp, fn) in enumerate(counts)]


def test_three_seeds_mean_and_sample_sd():
    rows = [{**BASE, "seed": s, "f1@0.5": f1, "f1@0.75": f1 - 0.2, "ap_dsb@0.5": 0.4, "coco_map": None}
            for s, f1 in ((0, 0.5), (1, 0.6), (2, 0.7))]
    (agg,) = aggregate_seeds(rows)
    assert agg.seeds == (0, 1, 2) and agg.n_seeds == 3 and agg.model == "unet (all)"
    assert [s.metric for s in agg.metrics] == list(SEED_METRICS)
    f1 = agg.spread("f1@0.5")
    assert f1.values == (0.5, 0.6, 0.7) and f1.mean == pytest.approx(0.6, abs=1e-15)
    assert f1.sd == pytest.approx(0.1, abs=1e-15)  # sqrt(((-0.1)^2 + 0 + 0.1^2) / (3 - 1))
    assert f1.text() == "0.600 ± 0.100" and f1.text(decimals=1, percent=True) == "60.0 ± 10.0"
    assert agg.spread("ap_dsb@0.5").sd == 0.0
    coco = agg.spread("coco_map")
    assert (coco.n_seeds, coco.mean, coco.sd, coco.text()) == (0, None, None, "n/a")
    with pytest.raises(DataError, match="'dice' was not aggregated"):
        agg.spread("dice")


def test_one_seed_has_no_sd_and_undefined_values_are_left_out():
    (one,) = aggregate_seeds([{**BASE, "seed": 0, "f1@0.5": 0.8}], metrics=("f1@0.5",))
    assert (one.spread("f1@0.5").mean, one.spread("f1@0.5").sd) == (0.8, None)
    assert one.spread("f1@0.5").text() == "0.800 ± –"
    s = seed_spread("f1@0.5", {0: 0.9, 1: None, 2: math.nan, 3: 0.7})
    assert s.seeds == (0, 3) and s.n_seeds == 2 and s.mean == pytest.approx(0.8)
    assert s.sd == pytest.approx(math.sqrt(0.02))
    assert mean_sd_text(float("nan"), None) == "n/a" and mean_sd_text(0.5, float("nan")) == "0.500 ± –"


def test_groups_by_setting_in_order_of_first_row():
    rows = [{**BASE, "seed": 0, "f1@0.5": 0.5},
            {**BASE, "seed": 0, "ground_truth": "flattened", "flatten_policy": "priority-last", "f1@0.5": 0.4},
            {**BASE, "seed": np.int64(1), "f1@0.5": 0.7},
            {**BASE, "seed": 0, "regime": "one", "f1@0.5": 0.3},
            {"method": "bare", "seed": 5.0, "f1@0.5": 0.1}]
    aggs = aggregate_seeds(rows, metrics=("f1@0.5",))
    assert [(a.ground_truth, a.regime, a.seeds) for a in aggs] == [
        ("overlap", "all", (0, 1)), ("flattened", "all", (0,)), ("overlap", "one", (0,)), (None, None, (5,))]
    assert aggs[0].spread("f1@0.5").mean == pytest.approx(0.6)
    assert aggs[1].flatten_policy == "priority-last" and aggs[3].dataset is None


def test_interval_is_the_lowest_seed_with_per_image_counts():
    a, b = [(8, 2, 1), (5, 0, 4), (9, 1, 1)], [(3, 3, 3), (4, 0, 1), (7, 2, 2)]
    rows = [{**BASE, "seed": 2, "f1@0.5": 0.7, "per_image": _per_image(a)},
            {**BASE, "seed": 0, "f1@0.5": 0.5},  # no per-image counts: not the interval's seed
            {**BASE, "seed": 1, "f1@0.5": 0.6, "per_image": _per_image(b)}]
    (agg,) = aggregate_seeds(rows, metrics=("f1@0.5",), n_boot=200, boot_seed=3)
    assert agg.interval_seed == 1
    assert agg.interval == bootstrap_interval(image_counts(_per_image(b), 0.5), "f1", n_boot=200, seed=3)
    (none,) = aggregate_seeds(rows, metrics=("f1@0.5",), interval_metric=None)
    assert none.interval is None and none.interval_seed is None
    # a seed scored without IoU 0.75 is passed over for an interval at 0.75
    (at75,) = aggregate_seeds(rows, metrics=(), interval_threshold=0.75)
    assert at75.interval is None


def test_rows_and_json():
    rows = [{**BASE, "seed": s, "f1@0.5": f1, "per_image": _per_image([(4, 1, 1), (2, 0, 2)])}
            for s, f1 in ((0, 0.5), (1, 0.7))]
    aggs = aggregate_seeds(rows, metrics=("f1@0.5", "ap_dsb@0.5"), n_boot=50)
    (row,) = seed_rows(aggs)
    assert row["seeds"] == [0, 1] and row["n_seeds"] == 2 and row["dataset"] == "dsb"
    assert row["f1@0.5"] == pytest.approx(0.6) and row["f1@0.5_sd"] == pytest.approx(math.sqrt(0.02))
    assert row["f1@0.5_n"] == 2 and row["ap_dsb@0.5"] is None and row["ap_dsb@0.5_n"] == 0
    assert row["interval_seed"] == 0 and row["interval_images"] == 2
    assert row["interval_low"] <= row["interval_estimate"] <= row["interval_high"]
    back = json.loads(json.dumps(aggs[0].to_dict()))
    assert back["metrics"][0]["values"] == [0.5, 0.7] and back["interval"]["n_boot"] == 50
    assert json.loads(json.dumps(row)) == row


@pytest.mark.parametrize(("rows", "match"), [
    ([{**BASE, "seed": 0}, {**BASE, "seed": 0}], r"rows 0 and 1 both have seed 0 for dataset='dsb'"),
    ([{**BASE}], "row 0 .* has no integer 'seed': None"),
    ([{**BASE, "seed": 0.5}], "no integer 'seed': 0.5"),
    ([{**BASE, "seed": True}], "no integer 'seed'"),
    ([{**BASE, "seed": 0, "f1@0.5": "0.5"}], "f1@0.5 must be a number or None, got '0.5'"),
    ([("dsb", 0)], "row 0 is a tuple, not a mapping"),
])
def test_bad_rows_are_named(rows, match):
    with pytest.raises(DataError, match=match):
        aggregate_seeds(rows)
