"""write_dataset: every format from a real on-disk layout, manifests, splits, overwrite rules."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import roifile
import tifffile
from shapely.geometry import shape as geojson_shape

from cellbench.data import read_dataset
from cellbench.data.dataset import Dataset, Sample
from cellbench.data.export import MANIFEST, read_label_tiff_metadata, write_dataset
from cellbench.data.synth import synth_glioma_c6
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

LABELS = {
    "a": np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 3, 3, 0, 9, 9],
            [0, 3, 3, 0, 9, 9],
            [0, 0, 0, 0, 0, 0],
            [7, 7, 0, 0, 0, 0],
        ],
        np.uint16,
    ),
    "b": np.array(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 2, 2, 2],
            [0, 0, 0, 2, 0, 2],
            [0, 0, 0, 2, 2, 2],
            [0, 0, 0, 0, 0, 0],
        ],
        np.uint16,
    ),
}


def _write_dsb(root, labels=LABELS):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, lab in labels.items():
        tifffile.imwrite(root / "images" / f"{name}.tif", (lab * 10).astype(np.uint8))
        tifffile.imwrite(root / "masks" / f"{name}.tif", lab)
    return root


@pytest.fixture
def dsb(tmp_path):
    return read_dataset(_write_dsb(tmp_path / "dsb"), "dsb")


def _ranked(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in increasing id order (label k = instance k - 1)."""
    ids = np.unique(labels[labels > 0])
    out = np.zeros_like(labels)
    for k, v in enumerate(ids):
        out[labels == v] = k + 1
    return out


def test_labels_from_dsb(dsb, tmp_path):
    out = tmp_path / "out"
    manifest = write_dataset(dsb, out, "labels", with_images=True)
    assert sorted(manifest["files"]) == ["labels/a.tif", "labels/b.tif"]
    for name, lab in LABELS.items():
        assert np.array_equal(tifffile.imread(out / "labels" / f"{name}.tif"), _ranked(lab))
        meta = read_label_tiff_metadata(out / "labels" / f"{name}.tif")
        assert meta["image"] == name and meta["classes"] == ["cell"]
        assert np.array_equal(tifffile.imread(out / "images" / f"{name}.tif"), (lab * 10).astype(np.uint8))
    assert manifest["n_images"] == 2
    assert manifest["n_instances"] == 5
    assert manifest["source"] == {"layout": "dsb", "root": str(dsb.root), "split": None, "task": "all"}
    assert manifest["classes"] == ["cell"]
    assert manifest["flatten"]["flatten_policy"] == "priority-last"
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "images", "labels"]


def test_coco_from_dsb(dsb, tmp_path):
    out = tmp_path / "out"
    manifest = write_dataset(dsb, out, "coco")
    data = json.loads((out / "annotations.json").read_text())
    assert manifest["files"] == ["annotations.json"]
    assert [i["file_name"] for i in data["images"]] == ["a.tif", "b.tif"]
    for image, name in zip(data["images"], ("a", "b")):
        lab = LABELS[name]
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        ids = [v for v in np.unique(lab) if v]
        assert len(anns) == len(ids)
        for ann, v in zip(anns, ids):
            rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
            assert np.array_equal(mask_utils.decode(rle).astype(bool), lab == v)
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", MANIFEST]


def test_roi_and_geojson_from_dsb(dsb, tmp_path):
    write_dataset(dsb, tmp_path / "roi", "roi")
    write_dataset(dsb, tmp_path / "gj", "geojson")
    for name, lab in LABELS.items():
        ids = [v for v in np.unique(lab) if v]
        rois = roifile.roiread(tmp_path / "roi" / "rois" / f"{name}.zip")
        assert len(rois) == len(ids)
        fc = json.loads((tmp_path / "gj" / "geojson" / f"{name}.geojson").read_text())
        assert [geojson_shape(f["geometry"]).area for f in fc["features"]] == [int((lab == v).sum()) for v in ids]
    # the ring of image b (label 2) has a hole: one composite ROI, a Polygon with an interior ring
    b_rois = roifile.roiread(tmp_path / "roi" / "rois" / "b.zip")
    assert b_rois[1].composite
    fc = json.loads((tmp_path / "gj" / "geojson" / "b.geojson").read_text())
    assert fc["features"][1]["geometry"]["type"] == "Polygon"
    assert len(fc["features"][1]["geometry"]["coordinates"]) == 2


def test_unknown_format_refused_before_writing(dsb, tmp_path):
    with pytest.raises(ValueError, match="unknown export format"):
        write_dataset(dsb, tmp_path / "out", "png")
    assert not (tmp_path / "out").exists()


def test_non_empty_out_refused_without_overwrite(dsb, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty") as err:
        write_dataset(dsb, out, "labels")
    assert str(out) in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsb", "out"]


def test_overwrite_replaces_folder(dsb, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    write_dataset(dsb, out, "labels", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "labels"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsb", "out"]  # no .old / .partial left


def test_empty_existing_folder_is_fine(dsb, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_dataset(dsb, out, "geojson")
    assert (out / "geojson" / "a.geojson").is_file()


def test_out_that_is_a_file_is_refused(dsb, tmp_path):
    out = tmp_path / "out"
    out.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        write_dataset(dsb, out, "labels", overwrite=True)
    assert out.read_text() == "x"


@pytest.fixture(scope="module")
def glioma(tmp_path_factory):
    root = tmp_path_factory.mktemp("glioma") / "synth"
    synth_glioma_c6(root, n_images=5, seed=1, shape=(200, 260), cells_per_image=8)
    return root


@pytest.mark.parametrize("fmt", ["labels", "coco", "roi", "geojson"])
def test_multi_split_dataset_goes_to_split_folders(glioma, tmp_path, fmt):
    ds = read_dataset(glioma, "glioma-c6")
    assert ds.split is None
    out = tmp_path / "out"
    manifest = write_dataset(ds, out, fmt, with_images=True)
    for s in ds:
        assert (out / "images" / s.split / s.image_path.name).is_file()
        sub = {"labels": "labels", "roi": "rois", "geojson": "geojson"}.get(fmt)
        if sub is not None and (fmt != "roi" or len(s.instances)):
            suffix = {"labels": ".tif", "roi": ".zip", "geojson": ".geojson"}[fmt]
            rel = f"{sub}/{s.split}/{s.name}{suffix}"
            assert rel in manifest["files"]
            assert (out / rel).is_file()
    assert manifest["n_images"] == len(ds) == 5
    assert manifest["source"]["layout"] == "glioma-c6"
    if fmt == "coco":
        data = json.loads((out / "annotations.json").read_text())
        assert len(data["images"]) == 5
        assert len(data["annotations"]) == sum(len(s.instances) for s in ds)


def test_one_split_has_no_split_folder(glioma, tmp_path):
    ds = read_dataset(glioma, "glioma-c6", split="train")
    out = tmp_path / "out"
    manifest = write_dataset(ds, out, "labels")
    assert manifest["files"] == [f"labels/{s.name}.tif" for s in ds]
    assert manifest["source"]["split"] == "train"


def test_same_name_in_two_splits_both_written(tmp_path):
    one = InstanceSet.from_label_image(np.array([[1, 0], [0, 0]], np.uint16))
    two = InstanceSet.from_label_image(np.array([[0, 0], [0, 1]], np.uint16))
    ds = Dataset(
        layout="hand",
        root=tmp_path,
        samples=(Sample("x", one, split="train"), Sample("x", two, split="test")),
        classes=("cell",),
    )
    out = tmp_path / "out"
    write_dataset(ds, out, "labels")
    assert tifffile.imread(out / "labels" / "train" / "x.tif").tolist() == [[1, 0], [0, 0]]
    assert tifffile.imread(out / "labels" / "test" / "x.tif").tolist() == [[0, 0], [0, 1]]


def test_task_recorded_in_manifest(glioma, tmp_path):
    ds = read_dataset(glioma, "glioma-c6", split="train", task="cells")
    manifest = write_dataset(ds, tmp_path / "out", "coco")
    assert manifest["source"]["task"] == "cells"
    assert manifest["classes"] == ["cell"]
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "cell", "supercategory": "cell"}]
