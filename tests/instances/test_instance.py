import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet


def _inst(y0, x0, h, w, **kw):
    return Instance(np.ones((h, w), bool), (y0, x0, y0 + h, x0 + w), **kw)


def test_from_mask_crops_tight_and_offsets():
    mask = np.zeros((6, 7), bool)
    mask[2:4, 3:6] = True
    mask[3, 1] = True
    inst = Instance.from_mask(mask, offset=(10, 20))
    assert inst.bbox == (12, 21, 14, 26)
    assert inst.area == 7
    assert inst.mask.shape == (2, 5)
    assert not inst.mask.flags.writeable
    np.testing.assert_array_equal(inst.to_full((20, 30))[10:16, 20:27], mask)


def test_from_mask_refuses_empty_mask():
    with pytest.raises(ValueError, match="no pixel"):
        Instance.from_mask(np.zeros((3, 3), bool))


def test_mask_must_match_bbox():
    with pytest.raises(ValueError, match="does not match bbox"):
        Instance(np.ones((2, 2), bool), (0, 0, 3, 2))


def test_centroid_of_rectangle():
    assert _inst(2, 4, 3, 5).centroid == (3.0, 6.0)


def test_set_refuses_instance_outside_image_and_bad_class():
    with pytest.raises(ValueError, match="outside image"):
        InstanceSet((4, 4), (_inst(2, 2, 3, 1),))
    with pytest.raises(ValueError, match="class_id 1"):
        InstanceSet((4, 4), (_inst(0, 0, 1, 1, class_id=1),), classes=("cell",))


def test_from_label_image_with_gaps_keeps_ids_and_order():
    labels = np.zeros((5, 6), np.uint16)
    labels[0:2, 0:2] = 7
    labels[3:5, 4:6] = 3
    labels[4, 0] = 12
    s = InstanceSet.from_label_image(labels)
    assert [i.source_id for i in s] == [3, 7, 12]
    assert [i.bbox for i in s] == [(3, 4, 5, 6), (0, 0, 2, 2), (4, 0, 5, 1)]
    assert s.areas.tolist() == [4, 4, 1]
    assert s.n_overlapping == 0


def test_from_label_image_consecutive_ids():
    labels = np.array([[1, 1, 0], [2, 0, 3]], np.int32)
    s = InstanceSet.from_label_image(labels)
    assert [i.area for i in s] == [2, 1, 1]


def test_from_label_image_empty():
    s = InstanceSet.from_label_image(np.zeros((3, 4), np.uint8))
    assert len(s) == 0 and s.shape == (3, 4)


@pytest.mark.parametrize("labels, problem", [
    (np.zeros((3, 3), np.float32), "non-integer dtype float32"),
    (np.zeros((3, 3), bool), "non-integer dtype bool"),
    (np.full((3, 3), -1, np.int16), "negative"),
    (np.zeros((2, 3, 3), np.uint8), "2-D"),
])
def test_from_label_image_refuses_bad_labels(labels, problem):
    with pytest.raises(DataError, match=problem) as err:
        InstanceSet.from_label_image(labels, source="x/y_masks.tif")
    assert "x/y_masks.tif" in str(err.value)


def test_overlap_queries():
    a, b, c = _inst(0, 0, 2, 2), _inst(1, 1, 2, 2), _inst(4, 4, 1, 1)
    s = InstanceSet((5, 5), (a, b, c))
    assert s.coverage()[1, 1] == 2 and s.coverage().sum() == 9
    assert s.overlapping().tolist() == [True, True, False]
    assert s.n_overlapping == 2


def test_class_counts_and_remap():
    s = InstanceSet(
        (4, 4),
        (_inst(0, 0, 1, 1, class_id=0), _inst(1, 1, 1, 1, class_id=1), _inst(2, 2, 1, 1, class_id=2)),
        classes=("a", "b", "soma"),
    )
    assert s.class_counts() == {"a": 1, "b": 1, "soma": 1}
    merged = s.remap_classes({"a": "cell", "b": "cell"}, ("cell",))
    assert merged.classes == ("cell",)
    assert merged.class_ids.tolist() == [0, 0]
    assert [i.bbox for i in merged] == [(0, 0, 1, 1), (1, 1, 2, 2)]


def test_scores_all_or_none():
    s = InstanceSet((3, 3), (_inst(0, 0, 1, 1, score=0.5), _inst(1, 1, 1, 1, score=0.25)))
    assert s.scores.tolist() == [0.5, 0.25]
    assert InstanceSet((3, 3), (_inst(0, 0, 1, 1, score=0.5), _inst(1, 1, 1, 1))).scores is None
