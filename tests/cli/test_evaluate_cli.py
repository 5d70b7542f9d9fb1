"""``cellbench evaluate`` on label folders, COCO files and a layout, with its JSON / CSV contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellbench.cli.main import main
from cellbench.data.synth import synth_glioma_c6
from cellbench.instances import InstanceSet, instance_to_rle
from cellbench.metrics import evaluate

from ..metrics.helpers import dsb_pair


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    (root / "gt").mkdir()
    (root / "pred").mkdir()
    pairs = {}
    for seed, name in enumerate(["a", "b"]):
        gt, pred = dsb_pair(seed)
        tifffile.imwrite(root / "gt" / f"{name}_masks.tif", gt.astype(np.uint16))
        tifffile.imwrite(root / "pred" / f"{name}.tif", pred.astype(np.int32))
        pairs[name] = (gt, pred)
    return root, pairs


def test_label_folders_json_and_csv(folders, tmp_path, capsys):
    root, pairs = folders
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    rc = main(["evaluate", "--gt", str(root / "gt"), "--pred", str(root / "pred"),
               "--json", str(out_json), "--csv", str(out_csv), "--boundary-px", "2"])
    assert rc == 0
    d = json.loads(out_json.read_text())
    ref = evaluate([pairs["a"][0], pairs["b"][0]], [pairs["a"][1], pairs["b"][1]],
                   names=["a", "b"], boundary_px=2).to_dict()
    assert d["iou_thresholds"] == [0.5, 0.75, 0.9]
    assert d["pooled"] == ref["pooled"] and d["image_mean"] == ref["image_mean"]
    assert [r["image"] for r in d["per_image"]] == ["a", "b"]
    assert d["settings"]["boundary_px"] == 2
    rows = list(csv.DictReader(Path(out_csv).read_text().splitlines()))
    assert [r["image"] for r in rows] == ["a", "b"] and "f1@0.75" in rows[0]
    printed = capsys.readouterr().out
    assert "ap_dsb" in printed and "0.75" in printed


def test_custom_thresholds_keys(folders, tmp_path):
    root, _ = folders
    rc = main(["evaluate", "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--iou", "0.5,0.7",
               "--json", str(tmp_path / "r.json")])
    assert rc == 0
    d = json.loads((tmp_path / "r.json").read_text())
    assert list(d["pooled"]) == ["0.5", "0.7"]


def _coco(pairs, scored: bool):
    images, anns, results = [], [], []
    rng = np.random.default_rng(0)
    for k, (name, (gt, pred)) in enumerate(sorted(pairs.items()), start=1):
        images.append({"id": k, "file_name": f"{name}.tif", "height": gt.shape[0], "width": gt.shape[1]})
        for inst in InstanceSet.from_label_image(gt):
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "iscrowd": 0,
                         "segmentation": instance_to_rle(inst, gt.shape), "area": inst.area, "bbox": [0, 0, 1, 1]})
        for inst in InstanceSet.from_label_image(pred):
            r = {"image_id": k, "category_id": 1, "segmentation": instance_to_rle(inst, gt.shape)}
            if scored:
                r["score"] = float(rng.random())
            results.append(r)
    cats = [{"id": 1, "name": "nucleus"}]
    return {"images": images, "annotations": anns, "categories": cats}, results


def test_coco_files_results_list_and_full_file(folders, tmp_path):
    _, pairs = folders
    gt, results = _coco(pairs, scored=True)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    full = dict(gt, annotations=[dict(r, id=i + 1) for i, r in enumerate(results)])
    (tmp_path / "full.json").write_text(json.dumps(full))
    outs = []
    for pred in ("res.json", "full.json"):
        rc = main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / pred), "--coco",
                   "--json", str(tmp_path / f"{pred}.out")])
        assert rc == 0
        outs.append(json.loads((tmp_path / f"{pred}.out").read_text()))
    assert outs[0]["coco"] == outs[1]["coco"]
    assert set(outs[0]["coco"]) >= {"map", "ap50", "ap75", "ar50", "ar75", "max_dets"}
    assert outs[0]["coco"]["max_dets"] == 3000
    # Matching counts from COCO files equal those from the label images they were made of.
    ref = evaluate([p[0] for _, p in sorted(pairs.items())], [p[1] for _, p in sorted(pairs.items())]).to_dict()
    assert outs[0]["pooled"]["0.5"]["tp"] == ref["pooled"]["0.5"]["tp"]


def test_errors_exit_2_with_the_problem(folders, tmp_path, capsys):
    root, pairs = folders
    (tmp_path / "p").mkdir()
    tifffile.imwrite(tmp_path / "p" / "a.tif", pairs["a"][1].astype(np.uint16))
    assert main(["evaluate", "--gt", str(root / "gt"), "--pred", str(tmp_path / "p")]) == 2
    assert "have no prediction: ['b']" in capsys.readouterr().err
    assert main(["evaluate", "--gt", str(root / "gt"), "--pred", str(tmp_path / "p"), "--missing-as-empty",
                 "--json", str(tmp_path / "m.json")]) == 0
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["per_image"][1]["n_pred"] == 0 and d["settings"]["missing_as_empty"] == ["b"]
    tifffile.imwrite(tmp_path / "p" / "b.tif", pairs["b"][1].astype(np.float32))
    assert main(["evaluate", "--gt", str(root / "gt"), "--pred", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "b.tif" in err and "non-integer dtype float32" in err
    gt, results = _coco(pairs, scored=False)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "res.json"), "--coco"]) == 2
    assert "need a score" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--gt", "x", "--pred", "y", "--iou", "0.5,1.5"])


def test_glioma_layout_ground_truth_keeps_overlaps(tmp_path):
    synth_glioma_c6(tmp_path / "g", n_images=2, shape=(240, 320), cells_per_image=8, seed=3)
    assert main(["data", "convert", str(tmp_path / "g" / "dataset"), "--layout", "glioma-c6", "--split", "train",
                 "--task", "cells", "--to", "labels", "--out", str(tmp_path / "flat")]) == 0
    labels = tmp_path / "flat" / "labels"
    assert main(["evaluate", "--gt", str(tmp_path / "g" / "dataset"), "--gt-layout", "glioma-c6", "--split", "train",
                 "--task", "cells", "--pred", str(labels), "--json", str(tmp_path / "r.json")]) == 0
    d = json.loads((tmp_path / "r.json").read_text())
    # The flattened labels of overlapping GT cannot match every overlapping GT cell at IoU 0.9.
    assert d["n_images"] == 1 and d["pooled"]["0.5"]["tp"] > 0
    assert d["pooled"]["0.9"]["fn"] >= 0


def test_evaluate_on_label_images_imports_nothing_it_does_not_use(folders, tmp_path):
    # Start-up is most of a scripted `cellbench evaluate` (benchmarks/evaluate_process.py): scipy alone
    # took ~0.6 s of imports. A fresh interpreter shows what the whole command, parser and run, imports.
    import subprocess
    import sys

    root, _ = folders
    heavy = ["scipy", "shapely", "imageio", "skimage", "matplotlib", "pandas", "torch", "numba", "http.client",
             "roifile", "cellbench.data.synth", "cellbench.data.export"]
    code = (
        "import sys\n"
        "from cellbench.cli.main import main\n"
        f"rc = main(['evaluate', '--gt', {str(root / 'gt')!r}, '--pred', {str(root / 'pred')!r}, "
        f"'--json', {str(tmp_path / 'r.json')!r}])\n"
        f"print(rc, [m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []"
    assert json.loads((tmp_path / "r.json").read_text())["n_images"] == 2


def test_per_image_records_stream_to_a_file_and_an_error_leaves_nothing(folders, tmp_path):
    root, pairs = folders
    out = tmp_path / "out"
    assert main(["evaluate", "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--json", str(out / "r.json"),
                 "--per-image", str(out / "r.jsonl"), "--csv", str(out / "r.csv")]) == 0
    d = json.loads((out / "r.json").read_text())
    records = [json.loads(line) for line in (out / "r.jsonl").read_text().splitlines()]
    assert records == d["per_image"] and [r["image"] for r in records] == ["a", "b"]
    # The second pair is refused after the first was scored: no output appears, none is left half-written.
    (tmp_path / "p").mkdir()
    tifffile.imwrite(tmp_path / "p" / "a.tif", pairs["a"][1].astype(np.uint16))
    tifffile.imwrite(tmp_path / "p" / "b.tif", pairs["b"][1][:-1].astype(np.uint16))
    bad = tmp_path / "bad"
    assert main(["evaluate", "--gt", str(root / "gt"), "--pred", str(tmp_path / "p"), "--json", str(bad / "r.json"),
                 "--per-image", str(bad / "r.jsonl"), "--csv", str(bad / "r.csv")]) == 2
    assert not bad.exists() or list(bad.iterdir()) == []


def test_tiff_has_no_pixel_limit_and_png_takes_max_pixels(folders, tmp_path, monkeypatch, capsys):
    from PIL import Image

    import imageio.v3 as iio

    root, pairs = folders
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the DSB images are far larger than 2 x 1000 pixels
    assert main(["evaluate", "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--json",
                 str(tmp_path / "tif.json")]) == 0
    for side in ("gt", "pred"):
        (tmp_path / side).mkdir()
        for name, pair in pairs.items():
            iio.imwrite(tmp_path / side / f"{name}.png", pair[side == "pred"].astype(np.uint16))
    assert main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "decompression bomb (--max-pixels N" in err
    assert main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--max-pixels", "0",
                 "--json", str(tmp_path / "png.json")]) == 0
    tif, png = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("tif", "png"))
    assert tif["pooled"] == png["pooled"]
