import numpy as np
import pycocotools.mask as mask_utils
import pytest

from cellbench.instances import Instance, instance_to_rle, rle_area, rle_to_instance


def _decode(rle):
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


@pytest.mark.parametrize("seed", range(20))
def test_rle_matches_pycocotools_encoding_of_full_mask(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 15, 2)
    full = rng.random((h, w)) < 0.4
    if not full.any():
        full[rng.integers(h), rng.integers(w)] = True
    inst = Instance.from_mask(full)
    rle = instance_to_rle(inst, (int(h), int(w)))
    reference = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
    assert rle["counts"] == reference["counts"].decode()
    assert rle["size"] == [h, w]
    np.testing.assert_array_equal(_decode(rle), full)
    assert rle_area(rle) == full.sum()
    back = rle_to_instance(rle, class_id=0)
    assert back.bbox == inst.bbox
    np.testing.assert_array_equal(back.mask, inst.mask)


@pytest.mark.parametrize("bbox", [(0, 0, 2, 2), (3, 4, 5, 6), (0, 4, 5, 6), (2, 0, 3, 1)])
def test_rle_of_instance_touching_borders(bbox):
    y0, x0, y1, x1 = bbox
    inst = Instance(np.ones((y1 - y0, x1 - x0), bool), bbox)
    np.testing.assert_array_equal(_decode(instance_to_rle(inst, (5, 6))), inst.to_full((5, 6)))


def test_rle_to_instance_accepts_uncompressed_counts():
    full = np.zeros((4, 3), np.uint8)
    full[1:3, 1] = 1
    inst = rle_to_instance({"size": [4, 3], "counts": [5, 2, 5]})
    assert inst.bbox == (1, 1, 3, 2)
    np.testing.assert_array_equal(inst.to_full((4, 3)), full.astype(bool))


def test_empty_rle_refused():
    with pytest.raises(ValueError, match="no pixel"):
        rle_to_instance({"size": [2, 2], "counts": [4]})
