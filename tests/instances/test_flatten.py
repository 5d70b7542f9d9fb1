import argparse
from typing import get_args

import numpy as np
import pytest

from cellbench.instances import (
    DEFAULT_POLICY,
    FLATTEN_NAMES,
    FlattenName,
    Instance,
    InstanceSet,
    NearestCentroidFlatten,
    PriorityFlatten,
    flatten,
    policy_from_name,
)


def _row(x0, x1, **kw):
    return Instance(np.ones((1, x1 - x0), bool), (0, x0, 1, x1), **kw)


@pytest.fixture
def pair():
    # a: columns 0-2, b: columns 2-5; they share column 2
    return InstanceSet((1, 6), (_row(0, 3), _row(2, 6)))


def test_priority_first_and_last(pair):
    assert flatten(pair, PriorityFlatten("first")).labels.tolist() == [[1, 1, 1, 2, 2, 2]]
    assert flatten(pair, PriorityFlatten("last")).labels.tolist() == [[1, 1, 2, 2, 2, 2]]


def test_default_is_priority_last():
    assert DEFAULT_POLICY == PriorityFlatten("last")


def test_nearest_centroid_splits_shared_pixels(pair):
    # centroids: a at x=1, b at x=3.5; shared x=2 is nearer a
    flat = flatten(pair, NearestCentroidFlatten())
    assert flat.labels.tolist() == [[1, 1, 1, 2, 2, 2]]
    assert flat.lost == ()


def test_nearest_centroid_drops_mostly_covered_instances_smallest_first():
    big = Instance(np.ones((4, 4), bool), (0, 0, 4, 4))
    inner = Instance(np.ones((2, 2), bool), (1, 1, 3, 3))  # 100 % covered -> dropped
    flat = flatten(InstanceSet((4, 4), (big, inner)), NearestCentroidFlatten())
    assert flat.lost == (1,)
    assert (flat.labels == 1).all()


def test_nearest_centroid_threshold_is_inclusive_at_75_percent():
    base = Instance(np.ones((1, 8), bool), (0, 0, 1, 8))
    small = Instance(np.ones((1, 4), bool), (0, 5, 1, 9))  # 3 of 4 pixels shared = 75 %
    flat = flatten(InstanceSet((1, 9), (base, small)), NearestCentroidFlatten())
    assert flat.lost == (1,)
    assert flat.labels.tolist() == [[1] * 8 + [0]]
    kept = flatten(InstanceSet((1, 9), (base, small)), NearestCentroidFlatten(drop_covered=0.8))
    # x=5 is equally near both centroids (3.5 and 6.5): the tie goes to the earlier instance
    assert kept.lost == () and kept.labels.tolist() == [[1, 1, 1, 1, 1, 1, 2, 2, 2]]


def test_nearest_centroid_only_gives_pixels_to_covering_instances():
    # shared pixel (0, 3): a's centroid (0, 1.5) is 1.5 away, b's (0, 6) 3 away; c's centroid
    # (1, 3) is nearest of all, but c does not cover it (Cellpose's own code would give it to c)
    a = Instance(np.ones((1, 4), bool), (0, 0, 1, 4))
    b = Instance(np.ones((1, 7), bool), (0, 3, 1, 10))
    c = Instance(np.ones((1, 1), bool), (1, 3, 2, 4))
    flat = flatten(InstanceSet((2, 10), (a, b, c)), NearestCentroidFlatten())
    assert flat.labels[0].tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert flat.labels[1].tolist() == [0, 0, 0, 3, 0, 0, 0, 0, 0, 0]


def test_hidden_instance_is_reported_lost():
    s = InstanceSet((1, 6), (_row(1, 3), _row(0, 6)))
    flat = flatten(s, PriorityFlatten("last"))
    assert flat.lost == (0,)
    assert flat.metadata()["lost_instances"] == [0]


def test_metadata_records_policy(pair):
    meta = flatten(pair, NearestCentroidFlatten()).metadata()
    assert meta["flatten_policy"] == "nearest-centroid"
    assert meta["flatten_params"] == {"drop_covered": 0.75}


def test_to_instance_set_keeps_class_score_and_source_id():
    s = InstanceSet(
        (1, 6),
        (_row(0, 3, class_id=1, score=0.9, source_id="a"), _row(2, 6, class_id=0, score=0.4, source_id="b")),
        classes=("x", "y"),
    )
    flat = flatten(s, PriorityFlatten("first")).to_instance_set()
    assert flat.classes == ("x", "y")
    assert [(i.class_id, i.score, i.source_id, i.area) for i in flat] == [(1, 0.9, "a", 3), (0, 0.4, "b", 3)]
    assert flat.n_overlapping == 0


def test_non_overlapping_sets_are_identical_under_every_policy():
    labels = np.zeros((6, 6), np.uint16)
    labels[:2, :2], labels[3:, 3:], labels[0, 5] = 1, 2, 3
    s = InstanceSet.from_label_image(labels)
    for name in ("priority-first", "priority-last", "nearest-centroid"):
        np.testing.assert_array_equal(flatten(s, policy_from_name(name)).labels, labels)


def test_flatten_names_come_from_the_literal():
    assert FLATTEN_NAMES == get_args(FlattenName) == ("priority-first", "priority-last", "nearest-centroid")
    assert [policy_from_name(name).name for name in FLATTEN_NAMES] == list(FLATTEN_NAMES)


def test_cli_flatten_choices_are_the_flatten_names():
    from cellbench.cli.main import build_parser

    parser = build_parser()
    for command in (["data", "convert"], ["predict"]):
        p = parser
        for name in command:
            p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        option = next(a for a in p._actions if "--flatten" in a.option_strings)
        assert option.choices is FLATTEN_NAMES, command


def test_policy_from_name_refuses_unknown():
    with pytest.raises(ValueError, match="unknown flatten policy.*" + ", ".join(FLATTEN_NAMES)):
        policy_from_name("random")
    with pytest.raises(ValueError):
        PriorityFlatten("middle")
