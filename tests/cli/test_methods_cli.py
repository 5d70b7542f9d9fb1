"""`cellbench methods / train / predict` end to end on tiny files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.draw import disk

from cellbench.cli.main import main
from cellbench.data.export import read_label_tiff_metadata
from cellbench.methods.adapters.watershed import WatershedMethod

FAST = "sigmas: [1.0]\nthreshold_scales: [0.9, 1.0]\ndistance_sigmas: [1.0]\nmin_distance_fractions: [0.3, 0.5]\n"


@pytest.fixture
def dsb(tmp_path) -> Path:
    """dsb layout: train/{images,masks} with 3 images, test/images with 2."""
    for split, seeds in (("train", (1, 2, 3)), ("test", (4, 5))):
        for k in seeds:
            rng = np.random.default_rng(k)
            labels = np.zeros((80, 120), np.uint16)
            for i, (r, c) in enumerate([(r, c) for r in (15, 40, 65) for c in (15, 45, 75, 105)], start=1):
                labels[disk((r + rng.integers(-3, 4), c + rng.integers(-3, 4)), rng.integers(6, 9), shape=labels.shape)] = i
            image = np.clip(20 + 150 * (labels > 0) + rng.normal(0, 8, labels.shape), 0, 255).astype(np.uint8)
            for folder, data in (("images", image), ("masks", labels)):
                (tmp_path / "dsb" / split / folder).mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(tmp_path / "dsb" / split / folder / f"img{k}.tif", data)
    (tmp_path / "fast.yaml").write_text(FAST + "tiling: {tile: 64, overlap: 24}\n")
    return tmp_path


def train(dsb: Path, *extra: str) -> int:
    return main(["train", "watershed", "--data", str(dsb / "dsb"), "--layout", "dsb", "--split", "train",
                 "--config", str(dsb / "fast.yaml"), "--out", str(dsb / "model"), *extra])


def test_train_then_predict(dsb, capsys):
    assert train(dsb, "--valid-split", "test", "--seed", "5") == 0
    record = json.loads((dsb / "model" / "model.json").read_text())
    assert record["method"] == "watershed" and record["seed"] == 5
    assert record["tiling"] == {"tile": 64, "overlap": 24}
    assert record["config"]["threshold_scales"] == [0.9, 1.0]
    assert record["train"]["n_images"] == 3 and record["train"]["source"]["valid_split"] == "test"
    assert record["history"]["val_metric"] == "f1@0.5"
    assert "trained watershed on 3 image(s)" in capsys.readouterr().out

    out = dsb / "pred"
    assert main(["predict", str(dsb / "model"), "--images", str(dsb / "dsb" / "test" / "images"),
                 "--out", str(out)]) == 0
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == ["img4.tif", "img5.tif"]
    meta = read_label_tiff_metadata(out / "labels" / "img4.tif")
    assert meta["flatten_policy"] == "priority-last" and meta["method"] == "watershed"
    assert tifffile.imread(out / "labels" / "img4.tif").max() >= 5
    manifest = json.loads((out / "cellbench-predict.json").read_text())
    assert manifest["coco"] is None and not (out / "predictions.json").exists()  # watershed has no scores
    assert manifest["tiling"] == {"tile": 64, "overlap": 24}


def test_images_limit_and_tiling_flags(dsb):
    assert train(dsb, "--images", "1", "--tile", "0") == 0
    record = json.loads((dsb / "model" / "model.json").read_text())
    assert record["train"]["n_images"] == 1 and record["tiling"]["tile"] == 0


def test_predict_tiling_flags_follow_the_training_rule(dsb):
    assert train(dsb) == 0  # tiling {tile: 64, overlap: 24} from the config file
    image = dsb / "dsb" / "test" / "images" / "img5.tif"
    for flags, expected in ((["--tile", "40"], {"tile": 40, "overlap": 10}),
                            (["--overlap", "8"], {"tile": 64, "overlap": 8})):
        out = dsb / f"p{expected['tile']}-{expected['overlap']}"
        assert main(["predict", str(dsb / "model"), "--images", str(image), "--out", str(out), *flags]) == 0
        assert json.loads((out / "cellbench-predict.json").read_text())["tiling"] == expected


def test_scored_predictions_also_go_to_coco(dsb, monkeypatch):
    assert train(dsb) == 0
    plain = WatershedMethod.predict

    def scored(self, image):
        found = plain(self, image)
        return found.replace(instances=tuple(i.replace(score=0.5) for i in found))

    monkeypatch.setattr(WatershedMethod, "predict", scored)
    image = dsb / "dsb" / "test" / "images" / "img5.tif"
    assert main(["predict", str(dsb / "model"), "--images", str(image), "--out", str(dsb / "p"),
                 "--flatten", "nearest-centroid", "--tile", "0"]) == 0
    # --tile without --overlap: a quarter of the tile, the same rule as a training config's tiling
    assert json.loads((dsb / "p" / "cellbench-predict.json").read_text())["tiling"] == {"tile": 0, "overlap": 0}
    coco = json.loads((dsb / "p" / "predictions.json").read_text())
    assert coco["annotations"] and all(a["score"] == 0.5 for a in coco["annotations"])
    assert read_label_tiff_metadata(dsb / "p" / "labels" / "img5.tif")["flatten_policy"] == "nearest-centroid"


@pytest.mark.parametrize(
    "config, message",
    [("sigmass: [1.0]\n", "unknown WatershedConfig field"), ("- 1\n- 2\n", "mapping"), ("a: [\n", "cannot parse")],
)
def test_bad_config_file(dsb, capsys, config, message):
    (dsb / "fast.yaml").write_text(config)
    assert train(dsb) == 2
    err = capsys.readouterr().err
    assert message in err and "fast.yaml" in err
    assert not (dsb / "model").exists()


def test_unknown_method_and_bad_model_dir(dsb, capsys):
    assert main(["train", "nosuch", "--data", str(dsb / "dsb"), "--layout", "dsb", "--out", str(dsb / "m")]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    (dsb / "notamodel").mkdir()
    assert main(["predict", str(dsb / "notamodel"), "--images", str(dsb), "--out", str(dsb / "p")]) == 2
    assert "no model.json" in capsys.readouterr().err


def test_methods_lists_requirements(capsys):
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["watershed"]["installed"] and rows["watershed"]["requires"] == []
    assert rows["cellpose"]["requires"] == ["torch", "cellpose"] and rows["cellpose"]["extra"] == "cellpose"
    assert main(["methods"]) == 0
    assert "watershed" in capsys.readouterr().out


def test_a_whole_slide_is_read_and_predicted_tile_by_tile(dsb, monkeypatch, capsys):
    """A TIFF above the whole-slide size is read a window at a time; a whole-image model predicts it in the slide
    tiling, and the labels (a tiled TIFF) equal those of the image read whole and predicted in the same tiles."""
    import cellbench.data.image_file as image_file
    import cellbench.methods.tiling as tiling

    assert train(dsb, "--tile", "0") == 0
    one = tifffile.imread(dsb / "dsb" / "test" / "images" / "img4.tif")
    slide = np.tile(one, (3, 3))  # 240 x 360
    (dsb / "slide").mkdir()
    tifffile.imwrite(dsb / "slide" / "big.tif", slide, tile=(32, 32), compression="zlib")
    monkeypatch.setattr(image_file, "LAZY_PIXELS", 200 * 200)
    monkeypatch.setattr(tiling, "SLIDE_TILING", tiling.TileConfig(tile=96, overlap=32))
    capsys.readouterr()
    assert main(["predict", str(dsb / "model"), "--images", str(dsb / "slide"), "--out", str(dsb / "lazy")]) == 0
    assert "read a window at a time: predicted in 96 px tiles, 32 px overlap" in capsys.readouterr().err
    manifest = json.loads((dsb / "lazy" / "cellbench-predict.json").read_text())
    assert manifest["tiling"]["tile"] == 0 and manifest["images"][0]["tiling"] == {"tile": 96, "overlap": 32}
    monkeypatch.setattr(image_file, "LAZY_PIXELS", 10**9)
    assert main(["predict", str(dsb / "model"), "--images", str(dsb / "slide"), "--out", str(dsb / "whole"),
                 "--tile", "96", "--overlap", "32"]) == 0
    lazy, whole = (tifffile.TiffFile(dsb / run / "labels" / "big.tif") for run in ("lazy", "whole"))
    assert lazy.pages[0].is_tiled and np.array_equal(lazy.asarray(), whole.asarray())
    assert lazy.asarray().max() >= 9 * 10  # every copy's cells, stitched across tiles
    lazy.close(), whole.close()
