"""COCO export: RLE masks that decode to the exact source pixels, scores, categories, round trip."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import tifffile
from pycocotools.coco import COCO

from cellbench.data.dataset import Dataset, Sample
from cellbench.data.export import MANIFEST, to_coco, write_dataset
from cellbench.data.layouts import read_coco
from cellbench.data.layouts.glioma_c6 import classify_category
from cellbench.instances import Instance, InstanceSet, PriorityFlatten

SHAPE = (9, 11)


def _instances(scores: bool) -> InstanceSet:
    """Overlapping, multi-part, holed and border-touching instances of classes cell / soma."""
    ring = np.ones((4, 4), bool)
    ring[1:3, 1:3] = False
    two = np.zeros((3, 5), bool)
    two[:, :2] = True
    two[1, 4] = True
    corner = np.ones((2, 3), bool)
    corner[0, 0] = False
    masks = [
        (np.ones((3, 3), bool), (0, 0), 0),  # top-left corner of the image
        (np.ones((2, 4), bool), (1, 1), 1),  # overlaps the first
        (ring, (2, 5), 0),  # a hole
        (two, (5, 0), 0),  # two parts, one instance
        (corner, (7, 8), 1),  # bottom-right corner of the image
        (np.ones((9, 1), bool), (0, 10), 0),  # whole last column
    ]
    insts = []
    for k, (m, off, cls) in enumerate(masks):
        score = round(0.95 - 0.1 * k, 3) if scores else None
        insts.append(Instance.from_mask(m, offset=off, class_id=cls, score=score))
    return InstanceSet(SHAPE, tuple(insts), classes=("cell", "soma"))


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def _sample(instances: InstanceSet, name: str = "img", image_path=None) -> Sample:
    return Sample(name=name, instances=instances, image_path=image_path)


@pytest.mark.parametrize("scores", [True, False])
def test_rle_decodes_to_exact_masks(scores):
    s = _instances(scores)
    coco = to_coco([_sample(s)], s.classes)
    anns = coco["annotations"]
    assert len(anns) == len(s)
    for k, (ann, inst) in enumerate(zip(anns, s)):
        assert ann["id"] == k + 1
        assert ann["image_id"] == 1
        assert ann["category_id"] == inst.class_id + 1
        assert ann["iscrowd"] == 0
        rle = ann["segmentation"]
        assert rle["size"] == list(SHAPE)
        assert isinstance(rle["counts"], str)
        assert np.array_equal(_decode(rle), inst.to_full(SHAPE))
        assert ann["area"] == inst.area
        y0, x0, y1, x1 = inst.bbox
        assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        if scores:
            assert ann["score"] == inst.score
        else:
            assert "score" not in ann
    json.dumps(coco)  # JSON-ready


def test_scores_only_where_instances_have_them():
    s = _instances(True)
    mixed = s.replace(instances=(s[0], s[1].replace(score=None), *s.instances[2:]))
    anns = to_coco([_sample(mixed)], mixed.classes)["annotations"]
    assert ["score" in a for a in anns] == [True, False, True, True, True, True]


def test_images_and_categories():
    s = _instances(False)
    coco = to_coco([_sample(s, "a"), _sample(InstanceSet(SHAPE, (), s.classes), "b")], s.classes, info={"k": 1})
    assert coco["info"] == {"k": 1}
    assert coco["images"] == [
        {"id": 1, "file_name": "a.tif", "height": 9, "width": 11},
        {"id": 2, "file_name": "b.tif", "height": 9, "width": 11},
    ]
    assert coco["categories"] == [
        {"id": 1, "name": "cell", "supercategory": "cell"},
        {"id": 2, "name": "soma", "supercategory": "cell_part"},
    ]
    # the categories read back as Glioma C6 classes
    assert [classify_category(c) for c in coco["categories"]] == ["cell", "soma"]


def test_ann_ids_continue_across_images():
    s = _instances(False)
    coco = to_coco([_sample(s, "a"), _sample(s, "b")], s.classes)
    assert [a["id"] for a in coco["annotations"]] == list(range(1, 2 * len(s) + 1))
    assert [a["image_id"] for a in coco["annotations"]] == [1] * len(s) + [2] * len(s)


def _hand_dataset(tmp_path, scores: bool) -> Dataset:
    images = tmp_path / "src"
    images.mkdir()
    samples = []
    for name in ("first", "second"):
        path = images / f"{name}.tif"
        tifffile.imwrite(path, np.zeros(SHAPE, np.uint8))
        samples.append(_sample(_instances(scores), name, path))
    return Dataset(layout="hand", root=images, samples=tuple(samples), classes=("cell", "soma"))


@pytest.mark.parametrize("scores", [True, False])
def test_pycocotools_loads_written_file(tmp_path, scores):
    ds = _hand_dataset(tmp_path, scores)
    out = tmp_path / "out"
    manifest = write_dataset(ds, out, "coco")
    assert manifest["files"] == ["annotations.json"]
    assert manifest["flatten"] is None
    assert manifest["n_instances"] == 2 * len(_instances(scores))
    coco = COCO(str(out / "annotations.json"))
    assert sorted(coco.getImgIds()) == [1, 2]
    assert coco.loadCats(2)[0]["supercategory"] == "cell_part"
    source = _instances(scores)
    for image_id in (1, 2):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(source)
        for ann, inst in zip(sorted(anns, key=lambda a: a["id"]), source):
            assert np.array_equal(coco.annToMask(ann).astype(bool), inst.to_full(SHAPE))
            assert ("score" in ann) is scores
    data = json.loads((out / "annotations.json").read_text())
    assert data["info"]["cellbench"]["format"] == "coco"
    assert data["info"]["cellbench"]["classes"] == ["cell", "soma"]
    assert json.loads((out / MANIFEST).read_text())["format"] == "coco"


def test_coco_load_results_with_scores(tmp_path):
    """Predictions with scores are usable as a pycocotools result set."""
    ds = _hand_dataset(tmp_path, True)
    out = tmp_path / "out"
    write_dataset(ds, out, "coco")
    gt = COCO(str(out / "annotations.json"))
    data = json.loads((out / "annotations.json").read_text())
    dt = gt.loadRes(data["annotations"])
    assert len(dt.getAnnIds()) == len(data["annotations"])


@pytest.mark.parametrize("scores", [True, False])
def test_cellbench_reader_round_trip(tmp_path, scores):
    ds = _hand_dataset(tmp_path, scores)
    out = tmp_path / "out"
    write_dataset(ds, out, "coco", with_images=True)
    back = read_coco(out / "annotations.json")
    assert back.classes == ("cell", "soma")
    assert [s.name for s in back] == ["first", "second"]
    for orig, read in zip(ds, back):
        assert read.instances.shape == SHAPE
        assert len(read.instances) == len(orig.instances)
        for a, b in zip(orig.instances, read.instances):
            assert a.bbox == b.bbox
            assert np.array_equal(a.mask, b.mask)
            assert a.class_id == b.class_id
            assert a.score == b.score
        assert read.instances.n_overlapping == orig.instances.n_overlapping == 4


def test_coco_with_flatten_policy_removes_overlaps(tmp_path):
    ds = _hand_dataset(tmp_path, True)
    out = tmp_path / "out"
    manifest = write_dataset(ds, out, "coco", policy=PriorityFlatten("first"))
    assert manifest["flatten"]["flatten_policy"] == "priority-first"
    data = json.loads((out / "annotations.json").read_text())
    assert data["info"]["cellbench"]["flatten"]["flatten_policy"] == "priority-first"
    source = _instances(True)
    anns = [a for a in data["annotations"] if a["image_id"] == 1]
    masks = [_decode(a["segmentation"]) for a in anns]
    assert len(masks) == len(source)
    assert (np.sum(masks, axis=0) <= 1).all()
    # the first instance wins the shared pixels; the second keeps only its own
    assert np.array_equal(masks[0], source[0].to_full(SHAPE))
    assert np.array_equal(masks[1], source[1].to_full(SHAPE) & ~source[0].to_full(SHAPE))
    # class and score survive flattening
    assert [a["category_id"] for a in anns] == [i.class_id + 1 for i in source]
    assert [a["score"] for a in anns] == [i.score for i in source]
