"""``cellbench analyze morphology`` end to end on a tiny synthetic Glioma C6 set, with predictions and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from cellbench.cli.main import main
from cellbench.data import Sample, read_dataset
from cellbench.data.export import to_coco, write_label_tiff
from cellbench.data.synth import synth_glioma_c6
from cellbench.instances import PriorityFlatten, flatten


@pytest.fixture(scope="module")
def glioma(tmp_path_factory):
    root = tmp_path_factory.mktemp("morph")
    synth_glioma_c6(root / "g", n_images=2, shape=(160, 200), cells_per_image=6, seed=1)
    ds = read_dataset(root / "g" / "dataset", "glioma-c6", split="test", task="all")
    assert sum(s.instances.n_overlapping for s in ds.samples) > 0  # the somata lie inside their cells
    # a `cellbench predict`-like folder: labels/ (flattened) and predictions.json (overlaps and scores kept)
    pred = root / "pred"
    (pred / "labels").mkdir(parents=True)
    scored = []
    for s in ds.samples:
        write_label_tiff(pred / "labels" / f"{s.name}.tif", flatten(s.instances, PriorityFlatten()))
        scored.append(Sample(s.name, s.instances.replace(instances=tuple(i.replace(score=0.9) for i in s.instances))))
    (pred / "predictions.json").write_text(json.dumps(to_coco(scored, ds.classes)))
    return root, ds


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ground_truth_and_predictions_with_plots(glioma, tmp_path, capsys):
    root, ds = glioma
    out_csv, plots = tmp_path / "m.csv", tmp_path / "plots"
    rc = main(["analyze", "morphology", str(root / "g" / "dataset"), "--layout", "glioma-c6", "--split", "test",
               "--task", "all", "--pred", str(root / "pred"), "--csv", str(out_csv), "--plots", str(plots)])
    assert rc == 0
    rows = _rows(out_csv)
    gt_rows = [r for r in rows if r["source"] == "ground truth"]
    pred_rows = [r for r in rows if r["source"] == "prediction"]
    instances = [(s.name, k, i) for s in ds.samples for k, i in enumerate(s.instances)]
    assert len(gt_rows) == len(instances)
    for row, (name, k, inst) in zip(gt_rows, instances):  # every instance whole, overlapping ones included
        assert (row["image"], int(row["instance"]), int(row["area"])) == (name, k, inst.area)
        assert row["class"] in ds.classes
    # predictions.json keeps the overlaps, so each prediction is measured as the GT instance it copies
    assert [(r["image"], r["area"], r["class"]) for r in pred_rows] == [(r["image"], r["area"], r["class"])
                                                                       for r in gt_rows]
    for name in ("morphology_distributions.png", "morphology_scatter.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ground truth" in capsys.readouterr().out


def test_predictions_from_labels_folder(glioma, tmp_path):
    root, ds = glioma
    pred = tmp_path / "pred"
    (pred / "labels").mkdir(parents=True)
    for f in (root / "pred" / "labels").iterdir():
        (pred / "labels" / f.name).write_bytes(f.read_bytes())
    out_csv = tmp_path / "m.csv"
    assert main(["analyze", "morphology", str(root / "g" / "dataset"), "--layout", "glioma-c6", "--split", "test",
                 "--task", "cells", "--pred", str(pred), "--csv", str(out_csv)]) == 0
    pred_rows = [r for r in _rows(out_csv) if r["source"] == "prediction"]
    flat = [flatten(s.instances, PriorityFlatten()) for s in read_dataset(
        root / "g" / "dataset", "glioma-c6", split="test", task="all").samples]
    expected = sorted(int(a) for f in flat for a in np.bincount(f.labels.ravel())[1:] if a)
    assert sorted(int(r["area"]) for r in pred_rows) == expected
    assert {r["class"] for r in pred_rows} == {"cell"}


def test_bad_input_exits_2_naming_the_file(glioma, tmp_path, capsys):
    root, _ = glioma
    missing = tmp_path / "nowhere"
    out_csv = tmp_path / "m.csv"
    assert main(["analyze", "morphology", str(missing), "--layout", "cellpose", "--csv", str(out_csv)]) == 2
    assert str(missing) in capsys.readouterr().err
    bad = tmp_path / "bad" / "labels"
    bad.mkdir(parents=True)
    tifffile.imwrite(bad / "spec_test_000.tif", np.ones((160, 200), np.float32))
    assert main(["analyze", "morphology", str(root / "g" / "dataset"), "--layout", "glioma-c6", "--split", "test",
                 "--pred", str(bad.parent), "--csv", str(out_csv)]) == 2
    err = capsys.readouterr().err
    assert "spec_test_000.tif" in err and "float" in err
    assert not out_csv.exists()


def _folder_set(root, masks: dict[str, np.ndarray]):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, labels in masks.items():
        tifffile.imwrite(root / "images" / f"{name}.tif", np.zeros(labels.shape, np.uint8))
        tifffile.imwrite(root / "masks" / f"{name}.tif", labels.astype(np.uint16))
    return root


def _labels(*rects, shape=(20, 20)):
    out = np.zeros(shape, np.uint16)
    for k, (y, x, h, w) in enumerate(rects, start=1):
        out[y : y + h, x : x + w] = k
    return out


def test_agreement_end_to_end(tmp_path, capsys):
    from cellbench.analysis import agreement

    sets = {
        "a": {"i1": _labels((0, 0, 6, 6), (10, 10, 6, 6)), "i2": _labels((2, 2, 8, 8))},
        "b": {"i1": _labels((0, 1, 6, 6), (10, 10, 5, 6), (0, 14, 4, 4)), "i2": _labels((2, 2, 8, 7))},
        "c": {"i1": _labels((0, 0, 6, 5)), "i2": _labels()},
    }
    paths = [str(_folder_set(tmp_path / k, v)) for k, v in sets.items()]
    pred = tmp_path / "pred"
    pred.mkdir()
    for name, labels in sets["a"].items():
        tifffile.imwrite(pred / f"{name}.tif", labels)
    out = tmp_path / "agree.json"
    assert main(["agreement", "--annotations", *paths, "--layout", "folder", "--pred", str(pred),
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert [(p["reference"], p["other"]) for p in d["pairs"]] == [(paths[0], paths[1]), (paths[0], paths[2]),
                                                                  (paths[1], paths[2])]
    assert set(d["pairs"][0]["by_iou"]) == {"0.5", "0.75", "0.9"}
    assert "strict majority" in d["consensus_rule"]
    assert [e["other"] for e in d["vs_consensus"]] == [*paths, str(pred)]
    assert d["vs_consensus"][-1]["kind"] == "prediction"
    assert d["settings"]["layout"] == "folder"
    # the same numbers as the library on the same data
    from cellbench.instances import InstanceSet

    direct = agreement({p: {n: InstanceSet.from_label_image(m) for n, m in sets[k].items()}
                        for p, k in zip(paths, sets)}).to_dict()
    assert [p["by_iou"] for p in d["pairs"]] == [p["by_iou"] for p in direct["pairs"]]
    assert d["consensus_instances"] == {"i1": 2, "i2": 1}
    assert "ap_dsb" in capsys.readouterr().out


def test_agreement_bad_input_exits_2(tmp_path, capsys):
    a = _folder_set(tmp_path / "a", {"i1": _labels((0, 0, 6, 6)), "i2": _labels((0, 0, 6, 6))})
    b = _folder_set(tmp_path / "b", {"i1": _labels((0, 0, 6, 6))})
    out = tmp_path / "agree.json"
    assert main(["agreement", "--annotations", str(a), str(b), "--layout", "folder", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(b) in err and "i2" in err
    assert main(["agreement", "--annotations", str(a), "--layout", "folder", "--json", str(out)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert not out.exists()
