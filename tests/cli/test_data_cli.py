"""``cellbench data info | convert | synth`` through main(argv): exact outputs and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import roifile
import shapely
import tifffile
from shapely.geometry import shape as geojson_shape

from cellbench import __version__
from cellbench.cli.main import main
from cellbench.data import read_dataset
from cellbench.data.export import MANIFEST, read_label_tiff_metadata
from cellbench.data.synth import split_counts

SHAPE = (3, 8)
POLICIES = ["priority-first", "priority-last", "nearest-centroid"]


def _row_polygon(x0: int, x1: int) -> list[float]:
    """COCO polygon covering columns x0..x1-1 of row 1."""
    return [x0, 1, x1, 1, x1, 2, x0, 2]


# image "o": A columns 0-4 (centroid 2), B columns 2-7 (centroid 4.5): they share columns 2-4.
# image "c": A columns 0-5, C columns 3-6: 3 of C's 4 pixels (75 %) shared.
ANNOTATIONS = {"o": [(0, 5), (2, 8)], "c": [(0, 6), (3, 7)]}
ROW1 = {
    "o": {
        "priority-first": [1, 1, 1, 1, 1, 2, 2, 2],
        "priority-last": [1, 1, 2, 2, 2, 2, 2, 2],
        "nearest-centroid": [1, 1, 1, 1, 2, 2, 2, 2],
    },
    "c": {
        "priority-first": [1, 1, 1, 1, 1, 1, 2, 0],
        "priority-last": [1, 1, 1, 2, 2, 2, 2, 0],
        "nearest-centroid": [1, 1, 1, 1, 1, 1, 0, 0],
    },
}


def _labels(name: str, policy: str) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint16)
    out[1] = ROW1[name][policy]
    return out


def _areas(name: str, policy: str | None) -> list[int]:
    """Pixel count per surviving instance, in annotation order."""
    if policy is None:
        return [x1 - x0 for x0, x1 in ANNOTATIONS[name]]
    row = np.array(ROW1[name][policy])
    return [int((row == k).sum()) for k in (1, 2) if (row == k).any()]


@pytest.fixture
def coco_dir(tmp_path):
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for image_id, name in enumerate(ANNOTATIONS, start=1):
        tifffile.imwrite(root / "images" / f"{name}.tif", np.full(SHAPE, 7, np.uint8))
        images.append({"id": image_id, "file_name": f"{name}.tif", "height": SHAPE[0], "width": SHAPE[1]})
        for x0, x1 in ANNOTATIONS[name]:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1,
                         "segmentation": [_row_polygon(x0, x1)], "area": x1 - x0, "bbox": [x0, 1, x1 - x0, 1],
                         "iscrowd": 0})
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell", "supercategory": "cell"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_info_json_on_hand_made_coco(coco_dir, capsys):
    rc, out, err = _run(capsys, "data", "info", coco_dir, "--layout", "coco", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["n_images"] == 2
    assert info["n_instances"] == 4
    assert info["per_class"] == {"cell": 4}
    assert info["n_overlapping_instances"] == 4
    assert info == read_dataset(coco_dir, "coco").summary()


@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_convert_labels(coco_dir, tmp_path, capsys, policy):
    out = tmp_path / "out"
    flatten = ["--flatten", policy] if policy else []
    rc, stdout, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "labels", *flatten, "--out", out)
    assert rc == 0, err
    used = policy or "priority-last"
    for name in ANNOTATIONS:
        path = out / "labels" / f"{name}.tif"
        assert np.array_equal(tifffile.imread(path), _labels(name, used))
        assert read_label_tiff_metadata(path)["flatten_policy"] == used
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["flatten"]["flatten_policy"] == used
    n = sum(len(_areas(name, used)) for name in ANNOTATIONS)
    assert manifest["n_instances"] == n
    assert stdout.strip() == f"wrote {n} instances of 2 images as labels to {out} (flatten: {used})"


def _decode(seg) -> np.ndarray:
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_convert_coco(coco_dir, tmp_path, capsys, policy):
    out = tmp_path / "out"
    flatten = ["--flatten", policy] if policy else []
    rc, stdout, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "coco", *flatten, "--out", out)
    assert rc == 0, err
    data = json.loads((out / "annotations.json").read_text())
    assert data["info"]["cellbench"]["flatten"] == (None if policy is None else {
        "flatten_policy": policy,
        "flatten_params": {"drop_covered": 0.75} if policy == "nearest-centroid" else {"winner": policy.split("-")[1]},
        "label_meaning": "label k is instance k-1 of the source annotation order; 0 is background",
    })
    for image in data["images"]:
        name = image["file_name"][:-4]
        masks = [_decode(a["segmentation"]) for a in data["annotations"] if a["image_id"] == image["id"]]
        if policy is None:
            expected = []
            for x0, x1 in ANNOTATIONS[name]:
                m = np.zeros(SHAPE, bool)
                m[1, x0:x1] = True
                expected.append(m)
        else:
            lab = _labels(name, policy)
            expected = [lab == k for k in (1, 2) if (lab == k).any()]
        assert len(masks) == len(expected)
        for got, want in zip(masks, expected):
            assert np.array_equal(got, want)
    if policy is None:
        assert "flatten: none (overlaps kept)" in stdout


@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_convert_roi(coco_dir, tmp_path, capsys, policy):
    out = tmp_path / "out"
    flatten = ["--flatten", policy] if policy else []
    rc, _, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "roi", *flatten, "--out", out)
    assert rc == 0, err
    for name in ANNOTATIONS:
        rois = roifile.roiread(out / "rois" / f"{name}.zip")
        assert [r.name for r in rois] == [f"{k + 1:04d}-cell" for k in range(len(rois))]
        areas = [shapely.Polygon(r.coordinates()).area for r in rois]
        assert areas == _areas(name, policy)
        if policy is None:  # the annotated polygons, as drawn
            for roi, (x0, x1) in zip(rois, ANNOTATIONS[name]):
                assert sorted(map(tuple, roi.coordinates().tolist())) == sorted(
                    [(x0, 1), (x1, 1), (x1, 2), (x0, 2)]
                )


@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_convert_geojson(coco_dir, tmp_path, capsys, policy):
    out = tmp_path / "out"
    flatten = ["--flatten", policy] if policy else []
    rc, _, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "geojson", *flatten, "--out", out)
    assert rc == 0, err
    for name in ANNOTATIONS:
        fc = json.loads((out / "geojson" / f"{name}.geojson").read_text())
        assert [geojson_shape(f["geometry"]).area for f in fc["features"]] == _areas(name, policy)
        assert all(f["properties"]["classification"]["name"] == "cell" for f in fc["features"])
        flat = fc["cellbench"]["flatten"]
        assert (flat is None) if policy is None else (flat["flatten_policy"] == policy)


def test_convert_with_images_and_overwrite(coco_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    rc, _, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "labels", "--out", out)
    assert rc == 2
    assert "not empty" in err and str(out) in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    rc, _, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "labels", "--out", out,
                      "--with-images", "--overwrite")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "images", "labels"]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["c.tif", "o.tif"]


def test_invalid_polygon_stops_unless_skipped(coco_dir, tmp_path, capsys):
    path = coco_dir / "annotations.json"
    coco = json.loads(path.read_text())
    coco["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                "segmentation": [[0, 0, 2, 2, 2, 0, 0, 2]]})  # a bow tie
    path.write_text(json.dumps(coco))
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "coco", "--out", out)
    assert rc == 2
    assert "annotation 99" in err and "self-intersecting" in err and str(path) in err
    assert not out.exists()
    rc, stdout, err = _run(capsys, "data", "convert", coco_dir, "--layout", "coco", "--to", "coco", "--out", out,
                           "--invalid-polygons", "skip")
    assert rc == 0, err
    assert stdout.startswith("wrote 4 instances of 2 images")


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "synth"
    rc = main(["data", "synth", "--layout", "glioma-c6", "--images", "6", "--out", str(out), "--seed", "2",
               "--shape", "200x260", "--cells-per-image", "8"])
    assert rc == 0
    return out


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "s"
    rc, stdout, err = _run(capsys, "data", "synth", "--layout", "glioma-c6", "--images", "5", "--out", out,
                           "--seed", "1", "--shape", "200x260", "--cells-per-image", "8")
    assert rc == 0, err
    counts = split_counts(5)
    folders = {"train": "spec/train", "valid": "spec/valid", "test": "spec/test", "gen": "gen"}
    parts = []
    for split, folder in folders.items():
        coco = json.loads((out / "dataset" / folder / f"anno_{split}.json").read_text())
        assert len(coco["images"]) == counts[split]
        assert len(list((out / "dataset" / folder / "images").glob("*.tif"))) == counts[split]
        parts.append(f"{split} {counts[split]} images / {len(coco['annotations'])} annotations")
    assert stdout.strip() == f"wrote a synthetic Glioma C6 dataset to {out}/dataset: " + ", ".join(parts)
    assert tifffile.imread(next((out / "dataset/gen/images").glob("*.tif"))).shape == (200, 260)


def test_synth_command_refuses_non_empty_out(tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "x").write_text("x")
    rc, _, err = _run(capsys, "data", "synth", "--images", "1", "--out", out, "--shape", "200x260",
                      "--cells-per-image", "8")
    assert rc == 2
    assert "not empty" in err
    assert [p.name for p in out.iterdir()] == ["x"]


def test_synth_bad_shape_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--images", "1", "--out", str(tmp_path / "s"), "--shape", "big"])
    assert exc.value.code == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


@pytest.mark.parametrize("split, task", [(None, "all"), ("test", "cells"), ("train", "soma"), ("gen", "all"), (None, "type-b")])
def test_info_json_matches_summary(synth_dir, capsys, split, task):
    argv = ["data", "info", synth_dir, "--layout", "glioma-c6", "--task", task, "--json"]
    if split:
        argv += ["--split", split]
    rc, out, err = _run(capsys, *argv)
    assert rc == 0, err
    info = json.loads(out)
    assert info == read_dataset(synth_dir, "glioma-c6", split=split, task=task).summary()
    for key in ("n_images", "n_instances", "per_class", "n_overlapping_instances"):
        assert key in info
    assert sum(info["per_class"].values()) == info["n_instances"]


def test_info_json_all_splits(synth_dir, capsys):
    rc, out, _ = _run(capsys, "data", "info", synth_dir, "--layout", "glioma-c6", "--json")
    assert rc == 0
    info = json.loads(out)
    assert info["n_images"] == 6
    assert {k: v["n_images"] for k, v in info["per_split"].items()} == split_counts(6)
    assert info["n_overlapping_instances"] > 0


def test_info_text(synth_dir, capsys):
    rc, out, _ = _run(capsys, "data", "info", synth_dir, "--layout", "glioma-c6", "--split", "test")
    assert rc == 0
    s = read_dataset(synth_dir, "glioma-c6", split="test").summary()
    assert out.splitlines()[0] == f"glioma-c6 dataset at {s['root']}"
    assert (f"{s['n_images']} images, {s['n_instances']} instances, "
            f"{s['n_overlapping_instances']} overlapping another instance") in out
    for name, n in s["per_class"].items():
        assert f"{name:>14}: {n}" in out


@pytest.mark.parametrize("fmt", ["labels", "coco", "roi", "geojson"])
def test_convert_synthetic_all_splits(synth_dir, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "data", "convert", synth_dir, "--layout", "glioma-c6", "--task", "cells",
                      "--to", fmt, "--out", out)
    assert rc == 0, err
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["source"]["task"] == "cells"
    assert manifest["n_images"] == 6
    if fmt != "coco":
        sub = {"labels": "labels", "roi": "rois", "geojson": "geojson"}[fmt]
        assert {p.name for p in (out / sub).iterdir()} <= {"train", "valid", "test", "gen"}


def test_unknown_split_is_exit_2_and_writes_nothing(synth_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "data", "convert", synth_dir, "--layout", "glioma-c6", "--split", "nope",
                           "--to", "coco", "--out", out)
    assert rc == 2
    assert stdout == ""
    assert err.startswith("cellbench: error: ")
    assert "unknown Glioma C6 split 'nope'" in err
    assert str(synth_dir / "dataset") in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_is_exit_2(synth_dir, capsys):
    rc, _, err = _run(capsys, "data", "info", synth_dir, "--layout", "glioma-c6", "--task", "nuclei")
    assert rc == 2
    assert "no task 'nuclei'" in err


def _dsb(root, labels):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    tifffile.imwrite(root / "images" / "x.tif", np.zeros(labels.shape, np.uint8))
    tifffile.imwrite(root / "masks" / "x.tif", labels)
    return root


def test_float_label_image_is_exit_2_naming_the_file(tmp_path, capsys):
    root = _dsb(tmp_path / "dsb", np.array([[0, 1.5], [1, 1]], np.float32))
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "data", "convert", root, "--layout", "dsb", "--to", "labels", "--out", out)
    assert rc == 2
    assert str(root / "masks" / "x.tif") in err
    assert "non-integer dtype float32" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsb"]
    rc, _, err = _run(capsys, "data", "info", root, "--layout", "dsb", "--json")
    assert rc == 2 and str(root / "masks" / "x.tif") in err


def test_dsb_unknown_split_folder(tmp_path, capsys):
    root = _dsb(tmp_path / "dsb", np.array([[0, 1], [2, 2]], np.uint16))
    rc, _, err = _run(capsys, "data", "info", root, "--layout", "dsb", "--split", "train")
    assert rc == 2
    assert "split folder 'train' not found" in err and str(root) in err


def test_dsb_labels_with_gaps_convert_exactly(tmp_path, capsys):
    labels = np.array([[0, 5, 5], [9, 0, 5], [9, 9, 0]], np.uint16)
    root = _dsb(tmp_path / "dsb", labels)
    rc, _, err = _run(capsys, "data", "convert", root, "--layout", "dsb", "--to", "labels", "--out", tmp_path / "o")
    assert rc == 0, err
    assert tifffile.imread(tmp_path / "o" / "labels" / "x.tif").tolist() == [[0, 1, 1], [2, 0, 1], [2, 2, 0]]
    rc, out, _ = _run(capsys, "data", "info", root, "--layout", "dsb", "--json")
    info = json.loads(out)
    assert (info["n_images"], info["n_instances"], info["per_class"], info["n_overlapping_instances"]) == (
        1, 2, {"cell": 2}, 0)


def test_missing_path_is_exit_2(tmp_path, capsys):
    rc, _, err = _run(capsys, "data", "info", tmp_path / "nothing", "--layout", "dsb")
    assert rc == 2
    assert str(tmp_path / "nothing") in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"cellbench {__version__}"
