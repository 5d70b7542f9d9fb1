"""Glioma C6: dataset/spec/{train,valid,test} + dataset/gen, tolerant categories, tasks, overlaps."""

import copy
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import tifffile

from cellbench.data.layouts import read_dataset, read_glioma_c6
from cellbench.data.layouts.glioma_c6 import classify_category
from cellbench.errors import DataError

H, W = 12, 16


def rect(x0, y0, x1, y1):
    """Axis-aligned rectangle: covers (x1 - x0) * (y1 - y0) pixels, bbox (y0, x0, y1, x1)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


SPEC_CATEGORIES = [
    {"id": 1, "name": "Cell type A", "supercategory": "cell"},
    {"id": 2, "name": "cell_b", "supercategory": "cell"},
    {"id": 3, "name": "A soma", "supercategory": "cell_part"},
    {"id": 4, "name": "part of B", "supercategory": "cell_part"},
    {"id": 5, "name": "background", "supercategory": "other"},  # no annotations: ignored
]
GEN_CATEGORIES = [{"id": 1, "name": "Cell", "supercategory": "cell"}]

# split -> image file -> [(category id, polygon), ...] in annotation order.
# train: A 3, B 2, soma 2; overlapping: t1 A, A, soma (3) + t2 B, soma (2) = 5.
# valid: A 1, soma 1, no overlap. test: B 2, overlapping 2. gen: cell 3, no overlap.
ANNOTATIONS = {
    "train": {
        "t1.tif": [(1, rect(1, 1, 5, 5)), (1, rect(3, 3, 8, 7)), (2, rect(10, 1, 15, 6)), (3, rect(2, 2, 4, 4))],
        "t2.tif": [(2, rect(0, 0, 4, 3)), (4, rect(1, 1, 3, 2)), (1, rect(8, 6, 12, 10))],
    },
    "valid": {"v1.tif": [(1, rect(0, 0, 3, 3)), (3, rect(5, 5, 7, 7))]},
    "test": {"s1.tif": [(2, rect(2, 2, 6, 6)), (2, rect(4, 4, 9, 9))]},
    "gen": {
        "g1.tif": [(1, rect(0, 0, 4, 4)), (1, rect(6, 6, 10, 10))],
        "g2.tif": [(1, rect(1, 1, 3, 3))],
    },
}
FOLDERS = {"train": "spec/train", "valid": "spec/valid", "test": "spec/test", "gen": "gen"}
TASKS = ["all", "cells", "soma", "type-a", "type-b", "types"]


def coco_for(split, annotations=None, categories=None):
    annotations = ANNOTATIONS[split] if annotations is None else annotations
    if categories is None:
        categories = GEN_CATEGORIES if split == "gen" else SPEC_CATEGORIES
    images, anns = [], []
    for iid, (file_name, polys) in enumerate(annotations.items(), start=1):
        images.append({"id": iid, "file_name": file_name, "height": H, "width": W})
        for cat, poly in polys:
            bbox_area = (poly[2] - poly[0]) * (poly[5] - poly[1])
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": cat, "segmentation": [poly],
                         "area": bbox_area, "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": copy.deepcopy(categories)}


def build(base: Path, splits=("train", "valid", "test", "gen"), data=None) -> Path:
    """Write ``base/dataset`` in the layout of Glioma C6's dataset.zip; ``data`` overrides a split's json."""
    root = base / "dataset"
    for k, split in enumerate(splits):
        folder = root / FOLDERS[split]
        coco = (data or {}).get(split) or coco_for(split)
        for j, img in enumerate(coco["images"]):
            path = folder / "images" / Path(img["file_name"]).name
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, np.full((img["height"], img["width"]), 10 * k + j, np.uint8))
        (folder / f"anno_{split}.json").write_text(json.dumps(coco))
    return root


def json_path(root, split):
    return root / FOLDERS[split] / f"anno_{split}.json"


def test_read_one_split(tmp_path):
    root = build(tmp_path)
    ds = read_glioma_c6(root, split="train")
    assert ds.layout == "glioma-c6" and ds.root == root and ds.split == "train" and ds.task == "all"
    assert ds.classes == ("cell_type_a", "cell_type_b", "soma")
    assert [s.name for s in ds] == ["t1", "t2"]
    assert [s.split for s in ds] == ["train", "train"]
    assert [s.image_path for s in ds] == [root / "spec/train/images/t1.tif", root / "spec/train/images/t2.tif"]
    t1, t2 = ds.samples
    assert [i.source_id for i in t1.instances] == [1, 2, 3, 4]  # json order kept
    assert [ds.classes[i.class_id] for i in t1.instances] == ["cell_type_a", "cell_type_a", "cell_type_b", "soma"]
    assert [i.bbox for i in t1.instances] == [(1, 1, 5, 5), (3, 3, 7, 8), (1, 10, 6, 15), (2, 2, 4, 4)]
    assert t1.instances.areas.tolist() == [16, 20, 25, 4]
    assert t2.instances.areas.tolist() == [12, 2, 16]
    assert t1.instances.overlapping().tolist() == [True, True, False, True]
    summary = ds.summary()
    assert summary["n_images"] == 2
    assert summary["n_instances"] == 7
    assert summary["per_class"] == {"cell_type_a": 3, "cell_type_b": 2, "soma": 2}
    assert summary["n_overlapping_instances"] == 5
    assert summary["tasks"] == TASKS
    assert summary["per_split"] == {"train": {"n_images": 2, "n_instances": 7}}
    assert ds.meta["skipped"] == {"train": {"crowd": 0, "invalid_polygon": 0, "other_category": 0}}
    assert t2.load_image().shape == (H, W)


@pytest.mark.parametrize("task, per_class, n_overlapping", [
    ("cells", {"cell": 5}, 2),
    ("soma", {"soma": 2}, 0),
    ("type-a", {"cell_type_a": 3}, 2),
    ("type-b", {"cell_type_b": 2}, 0),
    ("types", {"cell_type_a": 3, "cell_type_b": 2}, 2),
])
def test_tasks_on_train(tmp_path, task, per_class, n_overlapping):
    ds = read_dataset(build(tmp_path), "glioma-c6", split="train", task=task)
    assert ds.task == task
    assert ds.classes == tuple(per_class)
    summary = ds.summary()
    assert summary["per_class"] == per_class
    assert summary["n_instances"] == sum(per_class.values())
    assert summary["n_overlapping_instances"] == n_overlapping
    assert summary["n_images"] == 2


def test_read_all_splits(tmp_path):
    root = build(tmp_path)
    ds = read_dataset(tmp_path, "glioma-c6")  # the folder holding dataset/ works too
    assert ds.root == root and ds.split is None
    assert ds.classes == ("cell_type_a", "cell_type_b", "cell", "soma")
    assert [s.name for s in ds] == ["t1", "t2", "v1", "s1", "g1", "g2"]
    assert [s.split for s in ds] == ["train", "train", "valid", "test", "gen", "gen"]
    summary = ds.summary()
    assert summary["n_images"] == 6
    assert summary["n_instances"] == 14
    assert summary["per_class"] == {"cell_type_a": 4, "cell_type_b": 4, "cell": 3, "soma": 3}
    assert summary["n_overlapping_instances"] == 7
    assert summary["per_split"] == {
        "train": {"n_images": 2, "n_instances": 7},
        "valid": {"n_images": 1, "n_instances": 2},
        "test": {"n_images": 1, "n_instances": 2},
        "gen": {"n_images": 2, "n_instances": 3},
    }
    assert set(ds.meta["skipped"]) == {"train", "valid", "test", "gen"}
    cells = ds.with_task("cells").summary()
    assert cells["per_class"] == {"cell": 11}
    assert cells["n_overlapping_instances"] == 4
    assert ds.with_task("type-a").summary()["per_class"] == {"cell_type_a": 4}
    assert ds.with_task("soma").summary()["per_class"] == {"soma": 3}


@pytest.mark.parametrize("split, names, per_class", [
    ("valid", ["v1"], {"cell_type_a": 1, "cell_type_b": 0, "soma": 1}),
    ("test", ["s1"], {"cell_type_a": 0, "cell_type_b": 2, "soma": 0}),
    ("gen", ["g1", "g2"], {"cell": 3}),
])
def test_other_splits(tmp_path, split, names, per_class):
    """A split's classes are those its json's categories define, used or not."""
    ds = read_dataset(build(tmp_path), "glioma-c6", split=split)
    assert [s.name for s in ds] == names
    assert ds.summary()["per_class"] == per_class
    assert ds.classes == tuple(per_class)


def test_gen_untyped_cells_serve_the_cells_task(tmp_path):
    ds = read_dataset(build(tmp_path), "glioma-c6", split="gen", task="cells")
    assert ds.summary()["per_class"] == {"cell": 3}
    assert [i.bbox for i in ds.samples[0].instances] == [(0, 0, 4, 4), (6, 6, 10, 10)]


@pytest.mark.parametrize("task", ["type-a", "type-b", "soma"])
def test_typed_task_on_gen_raises(tmp_path, task):
    root = build(tmp_path)
    with pytest.raises(DataError, match=f"task '{task}' needs classes .* but this split gen of the dataset has \\['cell'\\]") as err:
        read_dataset(root, "glioma-c6", split="gen", task=task)
    assert err.value.path == str(root)


def test_unknown_split(tmp_path):
    root = build(tmp_path)
    with pytest.raises(DataError, match="unknown Glioma C6 split 'val'; choose from train, valid, test, gen") as err:
        read_dataset(root, "glioma-c6", split="val")
    assert err.value.path == str(root)


def test_unknown_task(tmp_path):
    root = build(tmp_path)
    with pytest.raises(DataError, match="layout glioma-c6 has no task 'nuclei'; tasks: all, cells, soma, type-a, type-b"):
        read_dataset(root, "glioma-c6", split="train", task="nuclei")


def test_missing_split_folder(tmp_path):
    root = build(tmp_path, splits=("train", "test"))
    with pytest.raises(DataError, match="split 'gen' folder gen is missing") as err:
        read_glioma_c6(root, split="gen")
    assert err.value.path == str(root)
    ds = read_glioma_c6(root)  # all splits present
    assert [s.split for s in ds] == ["train", "train", "test"]


def test_not_a_glioma_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="not a Glioma C6 folder") as err:
        read_glioma_c6(tmp_path)
    assert err.value.path == str(tmp_path)


def test_unrecognised_category_with_annotations_lists_the_categories(tmp_path):
    coco = coco_for("train")
    coco["categories"].append({"id": 9, "name": "debris", "supercategory": "junk"})
    coco["annotations"].append({"id": 99, "image_id": 1, "category_id": 9, "segmentation": [rect(0, 0, 2, 2)]})
    root = build(tmp_path, data={"train": coco})
    with pytest.raises(DataError, match="cannot match Glioma C6 categories") as err:
        read_glioma_c6(root, split="train")
    assert err.value.path == str(json_path(root, "train"))
    message = str(err.value)
    for listed in ["id 1: 'Cell type A' (supercategory 'cell')", "id 2: 'cell_b' (supercategory 'cell')",
                   "id 3: 'A soma' (supercategory 'cell_part')", "id 5: 'background' (supercategory 'other')",
                   "id 9: 'debris' (supercategory 'junk')"]:
        assert listed in message
    read_glioma_c6(root, split="valid")  # the other splits are fine


def test_no_recognised_category_at_all(tmp_path):
    coco = coco_for("valid", annotations={"v1.tif": []}, categories=[{"id": 1, "name": "thing", "supercategory": "x"}])
    root = build(tmp_path, splits=("valid",), data={"valid": coco})
    with pytest.raises(DataError, match="categories found: id 1: 'thing'") as err:
        read_glioma_c6(root, split="valid")
    assert err.value.path == str(json_path(root, "valid"))


def test_unrecognised_category_without_annotations_is_ignored(tmp_path):
    ds = read_glioma_c6(build(tmp_path), split="train")  # SPEC_CATEGORIES holds an unused 'background'
    assert "background" not in ds.classes
    assert ds.summary()["n_instances"] == 7


@pytest.mark.parametrize("category, expected", [
    ({"name": "Cell type A", "supercategory": "cell"}, "cell_type_a"),
    ({"name": "cell_a", "supercategory": "cell"}, "cell_type_a"),
    ({"name": "typeA", "supercategory": "cell"}, "cell_type_a"),
    ({"name": "A", "supercategory": "cells"}, "cell_type_a"),
    ({"name": "class-a cells", "supercategory": "cell"}, "cell_type_a"),
    ({"name": "Cell type B", "supercategory": "cell"}, "cell_type_b"),
    ({"name": "cell_b", "supercategory": "cell"}, "cell_type_b"),
    ({"name": "B type"}, "cell_type_b"),
    ({"name": "Cell", "supercategory": "cell"}, "cell"),
    ({"name": "glioma cell"}, "cell"),
    ({"name": "anything", "supercategory": "cell_part"}, "soma"),
    ({"name": "Cell type A", "supercategory": "Cell-Part"}, "soma"),
    ({"name": "Soma", "supercategory": "cell"}, "soma"),
    ({"name": "debris", "supercategory": "junk"}, None),
    ({"name": "type C", "supercategory": "cell"}, None),
])
def test_tolerant_category_matching(category, expected):
    assert classify_category(category) == expected


def test_alternative_category_names_read_the_same(tmp_path):
    cats = [
        {"id": 1, "name": "typeA", "supercategory": "glioma"},
        {"id": 2, "name": "Cell type B", "supercategory": "glioma"},
        {"id": 3, "name": "soma", "supercategory": "cell_part"},
        {"id": 4, "name": "somaB", "supercategory": "cell_part"},
    ]
    root = build(tmp_path, splits=("train",), data={"train": coco_for("train", categories=cats)})
    ds = read_glioma_c6(root, split="train")
    assert ds.summary()["per_class"] == {"cell_type_a": 3, "cell_type_b": 2, "soma": 2}


def test_json_beside_the_split_folder(tmp_path):
    root = build(tmp_path)
    json_path(root, "valid").rename(root / "spec" / "anno_valid.json")
    ds = read_glioma_c6(root, split="valid")
    assert [s.name for s in ds] == ["v1"]
    assert ds.summary()["per_class"] == {"cell_type_a": 1, "cell_type_b": 0, "soma": 1}


def test_single_json_with_another_name(tmp_path):
    root = build(tmp_path)
    json_path(root, "test").rename(root / "spec" / "test" / "annotations.json")
    assert read_glioma_c6(root, split="test").summary()["n_instances"] == 2


def test_ambiguous_jsons(tmp_path):
    root = build(tmp_path)
    folder = root / "spec" / "test"
    json_path(root, "test").rename(folder / "one.json")
    (folder / "two.json").write_text(json.dumps(coco_for("test")))
    with pytest.raises(DataError, match="cannot pick the annotation json of split 'test'; json files found: one.json, two.json") as err:
        read_glioma_c6(root, split="test")
    assert err.value.path == str(folder)


def test_file_names_with_a_folder_prefix(tmp_path):
    coco = coco_for("valid")
    coco["images"][0]["file_name"] = "images/v1.tif"
    root = build(tmp_path, splits=("valid",), data={"valid": coco})
    ds = read_glioma_c6(root, split="valid")
    assert ds.samples[0].image_path == root / "spec/valid/images/v1.tif"
    assert ds.samples[0].name == "v1"


def test_image_missing_on_disk(tmp_path):
    root = build(tmp_path)
    (root / "spec/valid/images/v1.tif").unlink()
    with pytest.raises(DataError, match=r"image id 1 \('v1.tif'\) not found") as err:
        read_glioma_c6(root, split="valid")
    assert err.value.path == str(json_path(root, "valid"))


def test_image_not_taken_from_another_split(tmp_path):
    """t1.tif exists in train only; the valid json naming it must not find it there."""
    coco = coco_for("valid", annotations={"t1.tif": [(1, rect(0, 0, 3, 3))]})
    root = build(tmp_path, data={"valid": coco})
    (root / "spec/valid/images/t1.tif").unlink()
    with pytest.raises(DataError, match="not found"):
        read_glioma_c6(root, split="valid")


def test_corrupt_image(tmp_path):
    root = build(tmp_path)
    bad = root / "spec/test/images/s1.tif"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 256, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="corrupt or unreadable image") as err:
        read_glioma_c6(root, split="test")
    assert err.value.path == str(bad)


def test_annotation_pointing_at_a_missing_image_id(tmp_path):
    coco = coco_for("valid")
    coco["annotations"][0]["image_id"] = 7
    root = build(tmp_path, data={"valid": coco})
    with pytest.raises(DataError, match="annotation 1 points at image_id 7") as err:
        read_glioma_c6(root, split="valid")
    assert err.value.path == str(json_path(root, "valid"))


def _with_bowtie(tmp_path):
    coco = coco_for("valid")
    coco["annotations"].insert(1, {"id": 50, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 4, 4, 0, 0, 4]]})
    return build(tmp_path, data={"valid": coco})


def test_self_intersecting_polygon_raises(tmp_path):
    root = _with_bowtie(tmp_path)
    with pytest.raises(DataError, match=r"annotation 50 \(image v1.tif\): polygon is self-intersecting") as err:
        read_glioma_c6(root, split="valid")
    assert err.value.path == str(json_path(root, "valid"))


def test_self_intersecting_polygon_skipped(tmp_path):
    root = _with_bowtie(tmp_path)
    ds = read_glioma_c6(root, invalid="skip")
    assert ds.meta["skipped"]["valid"] == {"crowd": 0, "invalid_polygon": 1, "other_category": 0}
    assert ds.meta["skipped"]["train"]["invalid_polygon"] == 0
    valid = [s for s in ds if s.split == "valid"]
    assert [i.source_id for i in valid[0].instances] == [1, 2]


def test_self_intersecting_polygon_kept(tmp_path):
    root = _with_bowtie(tmp_path)
    ds = read_dataset(root, "glioma-c6", split="valid", invalid="keep")
    v1 = ds.samples[0]
    assert [i.source_id for i in v1.instances] == [1, 50, 2]
    reference = mask_utils.decode(mask_utils.frPyObjects([[0, 0, 4, 4, 4, 0, 0, 4]], H, W))[..., 0].astype(bool)
    np.testing.assert_array_equal(v1.instances[1].to_full((H, W)), reference)
    assert ds.summary()["per_class"] == {"cell_type_a": 2, "cell_type_b": 0, "soma": 1}
    assert ds.summary()["n_overlapping_instances"] == 2  # the bow-tie overlaps cell 1


def test_typed_task_needs_the_class_in_the_split_categories(tmp_path):
    no_a = [c for c in SPEC_CATEGORIES if c["id"] != 1]
    coco = coco_for("test", categories=no_a)
    root = build(tmp_path, data={"test": coco})
    assert read_dataset(root, "glioma-c6", split="test").classes == ("cell_type_b", "soma")
    with pytest.raises(DataError, match="task 'type-a' needs classes \\['cell_type_a'\\]"):
        read_dataset(root, "glioma-c6", split="test", task="type-a")
    assert read_dataset(root, "glioma-c6", split="test", task="type-b").summary()["per_class"] == {"cell_type_b": 2}
    # a class the split's json defines, without instances, still makes the task valid (count 0)
    assert read_dataset(root, "glioma-c6", split="valid", task="type-b").summary()["per_class"] == {"cell_type_b": 0}
