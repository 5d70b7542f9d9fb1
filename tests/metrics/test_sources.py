"""Reading what `cellbench evaluate` scores: pairing names, label folders, COCO files, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellbench.errors import DataError
from cellbench.instances import InstanceSet, instance_to_rle
from cellbench.metrics.sources import pair_name, read_segmentations


@pytest.mark.parametrize(
    "stem, name",
    [
        ("img", "img"),
        ("img_masks", "img"),
        ("img_cp_masks", "img"),
        ("img_mask", "img"),
        ("img_labels", "img"),
        ("img_label", "img"),
        ("img_pred", "img"),
        ("img_masks_masks", "img_masks"),  # one suffix only
        ("_masks", "_masks"),  # a name that is only the suffix stays
        ("img_Masks", "img_Masks"),  # case counts
        ("img.masks", "img.masks"),
    ],
)
def test_pair_name(stem, name):
    assert pair_name(stem) == name


def _labels(seed: int) -> np.ndarray:
    labels = np.zeros((12, 16), np.uint16)
    labels[2:5, 2:6] = 3
    labels[7:10, 8 + seed : 12 + seed] = 9
    return labels


def test_label_folder_pairs_by_name_and_reads_tif_and_png(tmp_path):
    tifffile.imwrite(tmp_path / "a_masks.tif", _labels(0))
    Image.fromarray(_labels(1)).save(tmp_path / "b_label.png")
    (tmp_path / "notes.txt").write_text("not an image")
    tifffile.imwrite(tmp_path / ".hidden.tif", _labels(2))
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "c.tif", _labels(2))
    got = read_segmentations(tmp_path)
    assert sorted(got) == ["a", "b"]
    np.testing.assert_array_equal(got["a"], _labels(0))
    np.testing.assert_array_equal(got["b"], _labels(1))


def test_two_files_pairing_as_one_name_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _labels(0))
    tifffile.imwrite(tmp_path / "a_masks.tif", _labels(0))
    with pytest.raises(DataError) as info:
        read_segmentations(tmp_path)
    assert info.value.path == str(tmp_path) and "two files pair as 'a': a.tif and a_masks.tif" in str(info.value)


def test_bad_label_files_name_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(DataError, match="non-integer dtype float32") as info:
        read_segmentations(tmp_path)
    assert info.value.path == str(tmp_path / "f.tif")
    (tmp_path / "f.tif").write_bytes(b"II*\x00 truncated")
    with pytest.raises(DataError, match="corrupt or unreadable") as info:
        read_segmentations(tmp_path)
    assert info.value.path == str(tmp_path / "f.tif")


def test_empty_folder_missing_path_and_other_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no label images") as info:
        read_segmentations(tmp_path / "empty")
    assert info.value.path == str(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file or folder") as info:
        read_segmentations(tmp_path / "nope")
    assert info.value.path == str(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="expected a folder of label images or a COCO .json file") as info:
        read_segmentations(tmp_path / "x.csv")
    assert info.value.path == str(tmp_path / "x.csv")


def _coco(**change) -> tuple[dict, list]:
    """A two-image COCO dataset (categories listed out of id order) and a results list for it."""
    images = [{"id": k + 10, "file_name": f"{n}_masks.tif", "height": 12, "width": 16} for k, n in enumerate("ab")]
    cats = [{"id": 5, "name": "soma"}, {"id": 2, "name": "cell"}]
    anns, results = [], []
    for img, seed in zip(images, (0, 1)):
        for k, inst in enumerate(InstanceSet.from_label_image(_labels(seed))):
            rle = instance_to_rle(inst, (12, 16))
            cid = (2, 5)[k % 2]
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cid, "iscrowd": 0,
                         "segmentation": rle})
            results.append({"image_id": img["id"], "category_id": cid, "segmentation": rle, "score": 0.5})
    crowd = dict(anns[0], id=99, iscrowd=1)
    data = {"images": images, "annotations": anns + [crowd], "categories": cats, **change}
    return data, results


def test_full_coco_file_gives_instance_sets_by_pairing_name(tmp_path):
    data, _ = _coco()
    (tmp_path / "gt.json").write_text(json.dumps(data))
    got = read_segmentations(tmp_path / "gt.json")
    assert sorted(got) == ["a", "b"]
    for name, seed in (("a", 0), ("b", 1)):
        s = got[name]
        assert isinstance(s, InstanceSet) and s.shape == (12, 16)
        assert s.classes == ("cell", "soma")  # sorted by category id, not by listing order
        assert [s.classes[i.class_id] for i in s] == ["cell", "soma"]  # the crowd annotation is skipped
        np.testing.assert_array_equal(sum(i.to_full(s.shape) * v for i, v in zip(s, (3, 9))), _labels(seed))


def test_results_list_takes_images_from_the_ground_truth(tmp_path):
    data, results = _coco()
    (tmp_path / "res.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match="needs COCO ground truth") as info:
        read_segmentations(tmp_path / "res.json")
    assert info.value.path == str(tmp_path / "res.json")
    got = read_segmentations(tmp_path / "res.json", gt_coco=data)
    assert sorted(got) == ["a", "b"] and [i.score for i in got["a"]] == [0.5, 0.5]


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"images": [{"id": 10, "file_name": "a.tif", "width": 16}]}, "lacks id, file_name, width or height"),
        ({"images": [{"id": 10, "file_name": "a.tif", "height": 12, "width": 16},
                     {"id": 11, "file_name": "a_masks.tif", "height": 12, "width": 16}]}, "two images pair as 'a'"),
        ({"categories": [{"id": 2, "name": "cell"}]}, "category_id 5, which is not among the categories"),
        ({"images": [{"id": 10, "file_name": "a.tif", "height": 12, "width": 16}]},
         "image_id 11, which is not among the images"),
    ],
)
def test_coco_errors_name_the_file(tmp_path, change, problem):
    data, _ = _coco(**change)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=problem) as info:
        read_segmentations(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2"])
def test_unreadable_json_names_the_file(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not valid JSON") as info:
        read_segmentations(path)
    assert info.value.path == str(path)
