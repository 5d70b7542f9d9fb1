"""Synthetic Glioma C6: split proportions, determinism, and the layout read back with overlaps."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import shapely
import tifffile

from cellbench.data import read_dataset
from cellbench.data.synth import SPLIT_SHARES, split_counts, synth_glioma_c6
from cellbench.errors import DataError
from cellbench.instances import rasterize_polygon

SMALL = {"shape": (200, 260), "cells_per_image": 8}


@pytest.mark.parametrize(
    "n, expected",
    [
        (1, {"train": 1, "valid": 0, "test": 0, "gen": 0}),
        (2, {"train": 1, "valid": 0, "test": 1, "gen": 0}),
        (3, {"train": 1, "valid": 0, "test": 1, "gen": 1}),
        (4, {"train": 1, "valid": 1, "test": 1, "gen": 1}),
        (5, {"train": 2, "valid": 1, "test": 1, "gen": 1}),
        (10, {"train": 4, "valid": 1, "test": 1, "gen": 4}),
        (75, {"train": 30, "valid": 4, "test": 11, "gen": 30}),
        (150, {"train": 60, "valid": 8, "test": 22, "gen": 60}),
    ],
)
def test_split_counts_exact(n, expected):
    assert split_counts(n) == expected


def test_split_counts_add_up_and_follow_shares():
    total = sum(SPLIT_SHARES.values())
    for n in range(1, 301):
        counts = split_counts(n)
        assert list(counts) == ["train", "valid", "test", "gen"]
        assert sum(counts.values()) == n, counts
        if n >= 4:
            assert min(counts.values()) >= 1, counts
            for k, v in counts.items():
                assert abs(v - SPLIT_SHARES[k] * n / total) <= 1, (n, k, counts)


def test_split_counts_refuses_zero():
    with pytest.raises(ValueError):
        split_counts(0)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "seed3"
    summary = synth_glioma_c6(root, n_images=8, seed=3, **SMALL)
    return root, summary


def test_layout_and_summary(synth):
    root, summary = synth
    counts = split_counts(8)
    expected_files = []
    for split, folder in (("train", "spec/train"), ("valid", "spec/valid"), ("test", "spec/test"), ("gen", "gen")):
        prefix = "" if split == "gen" else "spec_"
        expected_files.append(f"dataset/{folder}/anno_{split}.json")
        expected_files += [f"dataset/{folder}/images/{prefix}{split}_{k:03d}.tif" for k in range(counts[split])]
        coco = json.loads((root / "dataset" / folder / f"anno_{split}.json").read_text())
        assert summary[split] == {"n_images": counts[split], "n_annotations": len(coco["annotations"])}
        assert [im["file_name"] for im in coco["images"]] == [
            f"{prefix}{split}_{k:03d}.tif" for k in range(counts[split])
        ]
        assert coco["info"]["seed"] == 3
    assert sorted(_files(root)) == sorted(expected_files)
    for path in root.rglob("*.tif"):
        pixels = tifffile.imread(path)
        assert pixels.shape == (200, 260)
        assert pixels.dtype == np.uint8
        assert 0 < pixels.std()


def test_deterministic_for_a_seed(synth, tmp_path):
    root, summary = synth
    again = synth_glioma_c6(tmp_path / "again", n_images=8, seed=3, **SMALL)
    assert again == summary
    assert _files(tmp_path / "again") == _files(root)


def test_other_seed_differs(synth, tmp_path):
    root, _ = synth
    synth_glioma_c6(tmp_path / "other", n_images=8, seed=4, **SMALL)
    a, b = _files(root), _files(tmp_path / "other")
    assert sorted(a) == sorted(b)
    assert a["dataset/spec/train/anno_train.json"] != b["dataset/spec/train/anno_train.json"]
    assert all(a[k] != b[k] for k in a if k.endswith(".tif"))


def test_categories(synth):
    root, _ = synth
    spec = json.loads((root / "dataset/spec/train/anno_train.json").read_text())
    gen = json.loads((root / "dataset/gen/anno_gen.json").read_text())
    assert spec["categories"] == [
        {"id": 1, "name": "Cell type A", "supercategory": "cell"},
        {"id": 2, "name": "Cell type B", "supercategory": "cell"},
        {"id": 3, "name": "Soma", "supercategory": "cell_part"},
    ]
    assert gen["categories"] == [{"id": 1, "name": "Cell", "supercategory": "cell"}]


def test_reads_back_with_overlaps(synth):
    root, summary = synth
    ds = read_dataset(root, "glioma-c6")
    s = ds.summary()
    assert s["n_images"] == 8
    # one instance per annotation: multi-part polygons are not split
    assert s["n_instances"] == sum(v["n_annotations"] for v in summary.values())
    assert s["n_overlapping_instances"] > 0
    assert s["per_class"]["soma"] > 0
    assert s["per_class"]["cell_type_a"] + s["per_class"]["cell_type_b"] > 0
    assert {k: v["n_images"] for k, v in s["per_split"].items()} == split_counts(8)
    for split, info in summary.items():
        assert s["per_split"][split]["n_instances"] == info["n_annotations"]


def test_gen_has_only_untyped_cells(synth):
    root, _ = synth
    gen = read_dataset(root, "glioma-c6", split="gen")
    assert gen.classes == ("cell",)
    assert all(len(s.instances) for s in gen)
    spec = read_dataset(root, "glioma-c6", split="train")
    assert "cell" not in spec.classes and "soma" in spec.classes


def _geometries(coco):
    out = {}
    for ann in coco["annotations"]:
        geom = shapely.union_all([shapely.Polygon(np.reshape(p, (-1, 2))) for p in ann["segmentation"]])
        out[ann["id"]] = (ann, geom)
    return out


def test_polygons_valid_and_at_least_89_px(synth):
    root, _ = synth
    for path in root.rglob("anno_*.json"):
        coco = json.loads(path.read_text())
        for ann, geom in _geometries(coco).values():
            assert geom.is_valid
            assert geom.area >= 89, (path.name, ann["id"])
            assert ann["area"] == pytest.approx(geom.area, abs=0.01)
            x0, y0, x1, y1 = geom.bounds
            assert 0 <= x0 and 0 <= y0 and x1 <= 260 and y1 <= 200
            assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.01)


def _pixels(ann, shape):
    return rasterize_polygon([np.reshape(p, (-1, 2)) for p in ann["segmentation"]], shape).to_full(shape)


def test_each_soma_inside_a_cell(synth):
    root, _ = synth
    shape = (200, 260)
    n_somata = 0
    for split in ("train", "valid", "test"):
        coco = json.loads((root / "dataset" / "spec" / split / f"anno_{split}.json").read_text())
        geoms = _geometries(coco)
        for ann, soma in geoms.values():
            if ann["category_id"] != 3:
                continue
            n_somata += 1
            cells = [(a, g) for a, g in geoms.values() if a["image_id"] == ann["image_id"] and a["category_id"] in (1, 2)]
            assert any(g.covers(soma) for _, g in cells), ann["id"]
            soma_px = _pixels(ann, shape)
            assert any(not (soma_px & ~_pixels(a, shape)).any() for a, _ in cells), ann["id"]
    assert n_somata > 0


def test_out_not_empty_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        synth_glioma_c6(out, n_images=1, **SMALL)
    synth_glioma_c6(out, n_images=1, overwrite=True, **SMALL)
    assert not (out / "x").exists()
    assert (out / "dataset/spec/train/anno_train.json").is_file()


def test_progress_called_per_image(tmp_path):
    calls = []
    synth_glioma_c6(tmp_path / "p", n_images=3, progress=calls.append, **SMALL)
    assert calls == [1, 1, 1]


def test_full_default_shape_is_the_real_image_size():
    assert inspect.signature(synth_glioma_c6).parameters["shape"].default == (1944, 2592)


def test_images_per_split_and_scale(tmp_path):
    """Split sizes given one by one; at scale 0.5 every cell is drawn at half its size (a quarter of the area)."""
    sizes = {"train": 2, "test": 1, "gen": 2}
    full = synth_glioma_c6(tmp_path / "full", images_per_split=sizes, seed=2, shape=(400, 520), cells_per_image=12)
    half = synth_glioma_c6(tmp_path / "half", images_per_split=sizes, seed=2, shape=(400, 520), cells_per_image=12,
                           scale=0.5)
    assert {k: v["n_images"] for k, v in half.items()} == sizes  # valid: none asked, none written
    assert not (tmp_path / "half" / "dataset" / "spec" / "valid").exists()

    def median_cell_area(root):
        coco = json.loads((root / "dataset/spec/train/anno_train.json").read_text())
        return np.median([a["area"] for a in coco["annotations"] if a["category_id"] in (1, 2)])

    ratio = median_cell_area(tmp_path / "half") / median_cell_area(tmp_path / "full")
    assert 0.15 < ratio < 0.35, ratio
    coco = json.loads((tmp_path / "half/dataset/spec/train/anno_train.json").read_text())
    assert coco["info"]["scale"] == 0.5
    assert min(a["area"] for a in coco["annotations"]) >= 89 * 0.25


def test_gen_images_vary_in_their_conditions(tmp_path):
    """The gen part is imaged under varying conditions: its images differ in brightness and contrast more than
    the spec images, which share one setting."""
    synth_glioma_c6(tmp_path / "s", images_per_split={"test": 4, "gen": 4}, seed=5, shape=(240, 320),
                    cells_per_image=10)
    stats = {}
    for split, folder in (("test", "spec/test"), ("gen", "gen")):
        images = [tifffile.imread(p).astype(float) for p in sorted((tmp_path / "s/dataset" / folder).rglob("*.tif"))]
        stats[split] = np.std([np.median(im) for im in images])
    assert stats["gen"] > 2 * stats["test"], stats


@pytest.mark.parametrize("bad", [{}, {"train": -1}, {"tarin": 2}, {"train": 0, "test": 0}])
def test_images_per_split_refuses_bad_counts(tmp_path, bad):
    with pytest.raises(ValueError, match="images_per_split"):
        synth_glioma_c6(tmp_path / "x", images_per_split=bad, **SMALL)


def test_either_n_images_or_images_per_split(tmp_path):
    with pytest.raises(ValueError, match="either n_images or images_per_split"):
        synth_glioma_c6(tmp_path / "x", n_images=2, images_per_split={"train": 1}, **SMALL)
    with pytest.raises(ValueError, match="either n_images or images_per_split"):
        synth_glioma_c6(tmp_path / "x", **SMALL)
    with pytest.raises(ValueError, match="scale"):
        synth_glioma_c6(tmp_path / "x", n_images=1, scale=0, **SMALL)
