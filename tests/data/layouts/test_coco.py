"""COCO json (polygons and RLE): LIVECell-style files, crowd, scores, overlaps, invalid polygons."""

import copy
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import tifffile

from cellbench.data.layouts import read_coco, read_dataset
from cellbench.errors import DataError

H, W = 12, 16
CATEGORIES = [{"id": 1, "name": "cell", "supercategory": "cell"}, {"id": 2, "name": "nucleus", "supercategory": "cell"}]


def rect(x0, y0, x1, y1):
    """Axis-aligned rectangle: covers (x1 - x0) * (y1 - y0) pixels, bbox (y0, x0, y1, x1)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


BOWTIE = [0, 0, 4, 4, 4, 0, 0, 4]


def rle_mask():
    """13 pixels: a 3 x 4 block at rows 3-5, cols 7-10, plus pixel (8, 2); bbox (3, 2, 9, 11)."""
    m = np.zeros((H, W), np.uint8)
    m[3:6, 7:11] = 1
    m[8, 2] = 1
    return m


def compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(mask):
    """COCO uncompressed RLE, written by hand: column-major runs starting with background."""
    flat = mask.ravel(order="F").astype(bool)
    runs, current, n = [], False, 0
    for v in flat:
        if v == current:
            n += 1
        else:
            runs.append(n)
            current, n = v, 1
    runs.append(n)
    return {"size": list(mask.shape), "counts": runs}


def rows_cols_mask(r0, r1, c0, c1):
    m = np.zeros((H, W), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def coco_dict():
    """Two 12 x 16 images. a.tif: cells 10 (12 px) and 12 (two parts, 4 + 9 px), nucleus 11
    (25 px, overlapping 10 on 4 px). b.tif: cell 13 (compressed RLE, 13 px), crowd 14,
    nucleus 15 (score 0.75, 12 px), cell 16 (uncompressed RLE, 10 px)."""
    return {
        "info": {"description": "hand-made"},
        "images": [
            {"id": 1, "file_name": "a.tif", "height": H, "width": W},
            {"id": 2, "file_name": "b.tif", "height": H, "width": W},
        ],
        "categories": copy.deepcopy(CATEGORIES),
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [rect(2, 1, 6, 4)], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 2, "segmentation": [rect(4, 2, 9, 7)], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 1, "segmentation": [rect(0, 8, 2, 10), rect(12, 9, 15, 12)],
             "iscrowd": 0},
            {"id": 13, "image_id": 2, "category_id": 1, "segmentation": compressed_rle(rle_mask()), "iscrowd": 0},
            {"id": 14, "image_id": 2, "category_id": 1, "segmentation": uncompressed_rle(rows_cols_mask(0, 12, 0, 16)),
             "iscrowd": 1},
            {"id": 15, "image_id": 2, "category_id": 2, "segmentation": [rect(12, 0, 16, 3)], "score": 0.75},
            {"id": 16, "image_id": 2, "category_id": 1, "segmentation": uncompressed_rle(rows_cols_mask(10, 12, 0, 5))},
        ],
    }


def write_tif(path: Path, shape=(H, W), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    return path


def write(root: Path, data: dict, json_name="annotations.json", image_dir="images") -> Path:
    """Write the images listed in ``data`` (at their declared size) under ``image_dir`` and the json."""
    for k, img in enumerate(data["images"]):
        write_tif(root / image_dir / img["file_name"], (img["height"], img["width"]), seed=k)
    path = root / json_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def by_id(sample):
    return {i.source_id: i for i in sample.instances}


def test_correct_read(tmp_path):
    path = write(tmp_path, coco_dict())
    ds = read_coco(path)
    assert ds.layout == "coco" and ds.root == path and ds.split is None
    assert ds.classes == ("cell", "nucleus")
    assert [s.name for s in ds] == ["a", "b"]
    a, b = ds.samples
    assert a.image_path == tmp_path / "images" / "a.tif"
    assert a.meta == {"image_id": 1, "file_name": "a.tif"}
    assert a.instances.shape == (H, W)
    assert [i.source_id for i in a.instances] == [10, 11, 12]  # annotation order
    assert [i.source_id for i in b.instances] == [13, 15, 16]  # crowd 14 skipped
    assert a.instances.class_counts() == {"cell": 2, "nucleus": 1}
    assert b.instances.class_counts() == {"cell": 2, "nucleus": 1}
    i10, i11 = by_id(a)[10], by_id(a)[11]
    assert (i10.bbox, i10.area, i10.class_id) == ((1, 2, 4, 6), 12, 0)
    assert (i11.bbox, i11.area, i11.class_id) == ((2, 4, 7, 9), 25, 1)
    np.testing.assert_array_equal(i10.polygon[0], np.array(rect(2, 1, 6, 4), float).reshape(-1, 2))
    summary = ds.summary()
    assert summary["n_images"] == 2
    assert summary["n_instances"] == 6
    assert summary["per_class"] == {"cell": 4, "nucleus": 2}
    assert summary["n_overlapping_instances"] == 2
    assert summary["tasks"] == ["all"]
    assert ds.meta["skipped"] == {"crowd": 1, "invalid_polygon": 0, "other_category": 0}
    np.testing.assert_array_equal(a.load_image(), tifffile.imread(tmp_path / "images" / "a.tif"))


def test_multi_part_polygon_is_one_instance_with_the_summed_area(tmp_path):
    a = read_coco(write(tmp_path, coco_dict())).samples[0]
    inst = by_id(a)[12]
    assert inst.area == 4 + 9
    assert inst.bbox == (8, 0, 12, 15)
    assert len(inst.polygon) == 2
    expected = np.zeros((H, W), bool)
    expected[8:10, 0:2] = True
    expected[9:12, 12:15] = True
    np.testing.assert_array_equal(inst.to_full((H, W)), expected)


def test_overlapping_annotations_are_kept(tmp_path):
    a = read_coco(write(tmp_path, coco_dict())).samples[0]
    assert a.instances.overlapping().tolist() == [True, True, False]
    assert a.instances.n_overlapping == 2
    assert int((a.instances.coverage() == 2).sum()) == 4


def test_compressed_and_uncompressed_rle(tmp_path):
    b = read_coco(write(tmp_path, coco_dict())).samples[1]
    i13, i16 = by_id(b)[13], by_id(b)[16]
    assert (i13.bbox, i13.area, i13.polygon) == ((3, 2, 9, 11), 13, None)
    np.testing.assert_array_equal(i13.to_full((H, W)), rle_mask().astype(bool))
    assert (i16.bbox, i16.area) == ((10, 0, 12, 5), 10)
    np.testing.assert_array_equal(i16.to_full((H, W)), rows_cols_mask(10, 12, 0, 5).astype(bool))


def test_score_is_carried(tmp_path):
    a, b = read_coco(write(tmp_path, coco_dict())).samples
    assert by_id(b)[15].score == 0.75
    assert by_id(b)[13].score is None
    assert b.instances.scores is None  # not every instance has one
    data = coco_dict()
    for ann in data["annotations"]:
        ann["score"] = ann["id"] / 100
    a, b = read_coco(write(tmp_path / "scored", data)).samples
    np.testing.assert_allclose(a.instances.scores, [0.10, 0.11, 0.12])
    np.testing.assert_allclose(b.instances.scores, [0.13, 0.15, 0.16])


def test_livecell_style_annotations_keyed_by_id(tmp_path):
    data = coco_dict()
    data["annotations"] = {str(a["id"]): a for a in data["annotations"]}
    path = write(tmp_path, data, json_name="livecell_coco_train.json",
                 image_dir="images/livecell_train_val_images/A172")
    ds = read_coco(path, image_dir=tmp_path / "images")
    assert ds.summary()["per_class"] == {"cell": 4, "nucleus": 2}
    assert [i.source_id for i in ds.samples[0].instances] == [10, 11, 12]
    assert ds.samples[1].image_path == tmp_path / "images" / "livecell_train_val_images" / "A172" / "b.tif"


def test_images_beside_the_json_or_in_image_dir(tmp_path):
    beside = write(tmp_path / "beside", coco_dict(), image_dir=".")
    assert read_coco(beside).samples[0].image_path == tmp_path / "beside" / "a.tif"
    data = coco_dict()
    json_path = tmp_path / "ann" / "x.json"
    json_path.parent.mkdir()
    json_path.write_text(json.dumps(data))
    write_tif(tmp_path / "elsewhere" / "a.tif")
    write_tif(tmp_path / "elsewhere" / "b.tif")
    ds = read_coco(json_path, image_dir=tmp_path / "elsewhere")
    assert [s.image_path for s in ds] == [tmp_path / "elsewhere" / "a.tif", tmp_path / "elsewhere" / "b.tif"]


def test_split_picks_the_json_in_a_folder(tmp_path):
    train = coco_dict()
    val = coco_dict()
    val["images"] = val["images"][:1]
    val["annotations"] = val["annotations"][:2]
    write(tmp_path, train, json_name="annotations/livecell_coco_train.json")
    write(tmp_path, val, json_name="annotations/livecell_coco_val.json")
    ds = read_dataset(tmp_path, "coco", split="val")
    assert ds.root == tmp_path / "annotations" / "livecell_coco_val.json"
    assert ds.split == "val" and [s.split for s in ds] == ["val"]
    assert ds.summary()["per_class"] == {"cell": 1, "nucleus": 1}
    assert read_dataset(tmp_path, "coco", split="train").summary()["n_instances"] == 6


def test_folder_with_one_json_needs_no_split(tmp_path):
    write(tmp_path, coco_dict(), json_name="only.json")
    assert read_dataset(tmp_path, "coco").root == tmp_path / "only.json"


def test_several_jsons_without_split(tmp_path):
    write(tmp_path, coco_dict(), json_name="x_train.json")
    write(tmp_path, coco_dict(), json_name="x_test.json")
    with pytest.raises(DataError, match=r"expected one COCO json, found: x_test.json, x_train.json \(pass --split") as err:
        read_coco(tmp_path)
    assert err.value.path == str(tmp_path)


def test_unknown_split(tmp_path):
    write(tmp_path, coco_dict(), json_name="x_train.json")
    with pytest.raises(DataError, match="expected one COCO json for split valid, found: none") as err:
        read_dataset(tmp_path, "coco", split="valid")
    assert err.value.path == str(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder") as err:
        read_coco(tmp_path / "nothing.json")
    assert err.value.path == str(tmp_path / "nothing.json")


def test_invalid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [')
    with pytest.raises(DataError, match="not valid JSON") as err:
        read_coco(path)
    assert err.value.path == str(path)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_json_without_a_top_level_list(tmp_path, key):
    data = coco_dict()
    del data[key]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"COCO json has no '{key}' list") as err:
        read_coco(path)
    assert err.value.path == str(path)


def test_json_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(DataError, match="must be an object") as err:
        read_coco(path)
    assert err.value.path == str(path)


def test_annotation_pointing_at_a_missing_image_id(tmp_path):
    data = coco_dict()
    data["annotations"].append({"id": 99, "image_id": 42, "category_id": 1, "segmentation": [rect(0, 0, 2, 2)]})
    path = write(tmp_path, data)
    with pytest.raises(DataError, match="annotation 99 points at image_id 42, which is not in 'images'") as err:
        read_coco(path)
    assert err.value.path == str(path)


def test_image_file_missing_on_disk(tmp_path):
    path = write(tmp_path, coco_dict())
    (tmp_path / "images" / "b.tif").unlink()
    with pytest.raises(DataError, match=r"image id 2 \('b.tif'\) not found") as err:
        read_coco(path)
    assert err.value.path == str(path)


def test_corrupt_image(tmp_path):
    path = write(tmp_path, coco_dict())
    bad = tmp_path / "images" / "b.tif"
    bad.write_bytes(np.random.default_rng(3).integers(0, 256, 400, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="corrupt or unreadable image") as err:
        read_coco(path)
    assert err.value.path == str(bad)


def test_image_size_differs_from_the_json(tmp_path):
    path = write(tmp_path, coco_dict())
    write_tif(tmp_path / "images" / "a.tif", (10, 16))
    with pytest.raises(DataError, match="image is 10 x 16 \\(h x w\\) but annotations.json says 12 x 16") as err:
        read_coco(path)
    assert err.value.path == str(tmp_path / "images" / "a.tif")


def test_image_entry_without_size(tmp_path):
    data = coco_dict()
    del data["images"][0]["height"]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="lacks id, file_name, width or height") as err:
        read_coco(path)
    assert err.value.path == str(path)


def test_rle_of_another_size(tmp_path):
    data = coco_dict()
    data["annotations"][3]["segmentation"] = compressed_rle(np.ones((12, 15), np.uint8))
    path = write(tmp_path, data)
    with pytest.raises(DataError, match=r"annotation 13 \(image b.tif\): RLE size \[12, 15\] differs from image size \[12, 16\]") as err:
        read_coco(path)
    assert err.value.path == str(path)


@pytest.mark.parametrize("segmentation, problem", [
    (None, "segmentation is neither polygons nor RLE"),
    ([], "segmentation is neither polygons nor RLE"),
    ([[0, 0, 4, 0, 4]], "polygon must be a flat list of x, y pairs"),
])
def test_malformed_segmentation(tmp_path, segmentation, problem):
    data = coco_dict()
    data["annotations"][0]["segmentation"] = segmentation
    path = write(tmp_path, data)
    with pytest.raises(DataError, match=problem) as err:
        read_coco(path)
    assert "annotation 10 (image a.tif)" in str(err.value)
    assert err.value.path == str(path)


def _with_bad_polygon(tmp_path, polygon, parts_before=()):
    data = coco_dict()
    data["annotations"].insert(1, {"id": 50, "image_id": 1, "category_id": 1,
                                   "segmentation": [*parts_before, polygon]})
    return write(tmp_path, data)


@pytest.mark.parametrize("polygon, problem", [
    (BOWTIE, r"polygon is self-intersecting"),
    (rect(-2, -2, 4, 3), r"polygon vertex \(-2, -2\) lies outside the 16 x 12 image"),
    (rect(12, 8, 18, 11), r"polygon vertex \(18, 8\) lies outside the 16 x 12 image"),
])
def test_invalid_polygon_raises_by_default(tmp_path, polygon, problem):
    path = _with_bad_polygon(tmp_path, polygon)
    with pytest.raises(DataError, match=problem) as err:
        read_coco(path)
    assert "annotation 50 (image a.tif)" in str(err.value)
    assert "invalid='skip'" in str(err.value)
    assert err.value.path == str(path)


@pytest.mark.parametrize("polygon", [BOWTIE, rect(-2, -2, 4, 3), rect(12, 8, 18, 11)])
def test_invalid_polygon_skipped_and_counted(tmp_path, polygon):
    ds = read_dataset(_with_bad_polygon(tmp_path, polygon), "coco", invalid="skip")
    assert [i.source_id for i in ds.samples[0].instances] == [10, 11, 12]
    assert ds.meta["skipped"] == {"crowd": 1, "invalid_polygon": 1, "other_category": 0}
    assert ds.summary()["n_instances"] == 6


def test_a_bad_part_skips_the_whole_annotation(tmp_path):
    ds = read_coco(_with_bad_polygon(tmp_path, BOWTIE, parts_before=[rect(10, 0, 12, 2)]), invalid="skip")
    assert 50 not in by_id(ds.samples[0])
    assert ds.meta["skipped"]["invalid_polygon"] == 1


def test_bowtie_kept_as_drawn(tmp_path):
    ds = read_coco(_with_bad_polygon(tmp_path, BOWTIE), invalid="keep")
    a = ds.samples[0]
    assert [i.source_id for i in a.instances] == [10, 50, 11, 12]
    inst = by_id(a)[50]
    reference = mask_utils.decode(mask_utils.frPyObjects([BOWTIE], H, W))[..., 0].astype(bool)
    np.testing.assert_array_equal(inst.to_full((H, W)), reference)
    assert inst.area == 8
    assert ds.meta["skipped"]["invalid_polygon"] == 0


@pytest.mark.parametrize("polygon, bbox, area", [
    (rect(-2, -2, 4, 3), (0, 0, 3, 4), 12),
    (rect(12, 8, 18, 11), (8, 12, 11, 16), 12),
])
def test_polygon_outside_the_image_kept_is_clipped(tmp_path, polygon, bbox, area):
    ds = read_coco(_with_bad_polygon(tmp_path, polygon), invalid="keep")
    inst = by_id(ds.samples[0])[50]
    assert (inst.bbox, inst.area) == (bbox, area)
    assert ds.summary()["n_instances"] == 7


def test_polygon_entirely_outside_is_dropped_even_when_kept(tmp_path):
    ds = read_coco(_with_bad_polygon(tmp_path, rect(20, 20, 24, 24)), invalid="keep")
    assert 50 not in by_id(ds.samples[0])
    assert ds.meta["skipped"]["invalid_polygon"] == 1


def test_degenerate_polygon(tmp_path):
    path = _with_bad_polygon(tmp_path, [1, 1, 3, 3, 1, 1])
    with pytest.raises(DataError, match="fewer than 3 distinct vertices"):
        read_coco(path)
    ds = read_coco(path, invalid="keep")  # nothing to draw: left out, counted
    assert 50 not in by_id(ds.samples[0])
    assert ds.meta["skipped"]["invalid_polygon"] == 1


def test_empty_rle(tmp_path):
    data = coco_dict()
    data["annotations"][3]["segmentation"] = compressed_rle(np.zeros((H, W), np.uint8))
    path = write(tmp_path, data)
    with pytest.raises(DataError, match="annotation 13 .*RLE covers no pixel"):
        read_coco(path)
    ds = read_coco(path, invalid="skip")
    assert [i.source_id for i in ds.samples[1].instances] == [15, 16]
    assert ds.meta["skipped"]["invalid_polygon"] == 1


def test_duplicate_category_names_stay_distinct(tmp_path):
    data = coco_dict()
    data["categories"][1]["name"] = "cell"
    ds = read_coco(write(tmp_path, data))
    assert ds.classes == ("cell#1", "cell#2")
    assert ds.summary()["per_class"] == {"cell#1": 4, "cell#2": 2}


def test_categories_are_ordered_by_id(tmp_path):
    data = coco_dict()
    data["categories"] = [{"id": 7, "name": "z-late"}, *data["categories"]]
    ds = read_coco(write(tmp_path, data))
    assert ds.classes == ("cell", "nucleus", "z-late")
    assert ds.summary()["per_class"] == {"cell": 4, "nucleus": 2, "z-late": 0}


def test_image_without_annotations_is_an_empty_sample(tmp_path):
    data = coco_dict()
    data["images"].append({"id": 3, "file_name": "c.tif", "height": H, "width": W})
    ds = read_coco(write(tmp_path, data))
    assert [s.name for s in ds] == ["a", "b", "c"]
    assert len(ds.samples[2].instances) == 0


def test_unknown_task(tmp_path):
    path = write(tmp_path, coco_dict())
    with pytest.raises(DataError, match="layout coco has no task 'cells'; tasks: all") as err:
        read_dataset(path, "coco", task="cells")
    assert err.value.path == str(path)


def test_annotation_with_unknown_category_id_names_the_json(tmp_path):
    data = coco_dict()
    data["annotations"][0]["category_id"] = 99
    path = write(tmp_path, data)
    with pytest.raises(DataError, match="annotation 10 has category_id 99, which is not in 'categories'") as err:
        read_coco(path)
    assert str(path) in str(err.value)


def test_split_matches_whole_words_only(tmp_path):
    for name in ("coco_interval.json", "coco_val.json"):
        write(tmp_path, coco_dict(), json_name=name)
    assert read_coco(tmp_path, split="val").root.name == "coco_val.json"
