"""Modality transfer: dilation stops at neighbours, erosion equals scipy's, the sweep finds the right k, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from cellbench.analysis import dilate_instances, erode_instances, transfer_rows, transfer_sweep
from cellbench.cli.main import main
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

YY, XX = np.mgrid[:48, :48]
CENTRES = [(12, 12), (12, 34), (34, 20)]


def _discs(radius: float) -> np.ndarray:
    labels = np.zeros((48, 48), np.uint16)
    for k, (cy, cx) in enumerate(CENTRES):
        labels[(YY - cy) ** 2 + (XX - cx) ** 2 <= radius**2] = k + 1
    return labels


def test_dilation_stops_at_neighbours():
    labels = np.zeros((1, 12), np.uint8)
    labels[0, 2], labels[0, 6] = 1, 2
    grown = dilate_instances(InstanceSet.from_label_image(labels), 3)
    masks = [inst.to_full((1, 12))[0] for inst in grown]
    assert np.flatnonzero(masks[0]).tolist() == [0, 1, 2, 3, 4]  # the gap is split between the two
    assert np.flatnonzero(masks[1]).tolist() == [5, 6, 7, 8, 9]
    assert not (masks[0] & masks[1]).any()
    assert dilate_instances(InstanceSet.from_label_image(labels), 0) is not None


def test_dilation_keeps_class_and_score():
    s = InstanceSet.from_label_image(_discs(3), classes=("nucleus",))
    s = s.replace(instances=tuple(i.replace(score=0.5 + 0.1 * k) for k, i in enumerate(s)))
    grown = dilate_instances(s, 2)
    assert grown.classes == ("nucleus",) and [i.score for i in grown] == [0.5, 0.6, 0.7]
    assert all(g.area > i.area for g, i in zip(grown, s))


def test_erosion_equals_scipy_per_instance():
    labels = _discs(7)
    s = InstanceSet.from_label_image(labels)
    for k in (1, 3):
        eroded = erode_instances(s, k)
        for j, inst in enumerate(eroded):
            want = ndimage.binary_erosion(labels == j + 1, iterations=k)
            assert np.array_equal(inst.to_full((48, 48)), want)
    assert len(erode_instances(s, 20)) == 0
    with pytest.raises(DataError, match="k >= 0"):
        erode_instances(s, -1)


def test_sweep_finds_the_radius_difference():
    cells = [InstanceSet.from_label_image(_discs(8))]
    nuclei = [InstanceSet.from_label_image(_discs(4))]
    grow = transfer_sweep(nuclei, cells, operation="dilate", ks=[0, 2, 4, 6], coco=True)
    ap = [p.pooled["0.5"]["ap_dsb"] for p in grow.points]
    assert ap[0] == 0.0 and ap[2] == 1.0  # r 4 vs 8: IoU 0.25; grown by 4: the same disc
    assert grow.best().k == 4 and grow.points[2].coco_map > grow.points[0].coco_map
    shrink = transfer_sweep(cells, nuclei, operation="erode", ks=[0, 4])
    assert [p.pooled["0.5"]["ap_dsb"] for p in shrink.points] == [0.0, 1.0]
    rows = transfer_rows([grow, shrink])
    assert len(rows) == 6 and rows[0]["operation"] == "dilate" and "coco_map" in rows[0]
    with pytest.raises(DataError, match="operation"):
        transfer_sweep(nuclei, cells, operation="open")
    with pytest.raises(DataError, match="source images"):
        transfer_sweep(nuclei, [], operation="dilate")


def test_cli_on_a_tissuenet_file(tmp_path, capsys):
    n = 2
    X = np.random.default_rng(0).random((n, 48, 48, 2)).astype(np.float32)
    y = np.stack([np.stack([_discs(8), _discs(4)], axis=-1)] * n).astype(np.int32)  # channel 0 cells, 1 nuclei
    root = tmp_path / "tissuenet"
    root.mkdir()
    np.savez(root / "tissuenet_v1.1_test.npz", X=X, y=y)
    out = tmp_path / "transfer"
    assert main(["analyze", "transfer", str(root), "--layout", "tissuenet", "--split", "test", "--k", "0,4",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dilated" in printed and "best k=4" in printed
    d = json.loads((out / "transfer.json").read_text())
    assert [s["operation"] for s in d["sweeps"]] == ["dilate", "erode"]
    assert d["sweeps"][0]["points"][1]["pooled"]["0.5"]["ap_dsb"] == 1.0
    assert (out / "transfer.png").stat().st_size > 1000 and (out / "transfer.csv").read_text().count("\n") == 5
    assert main(["analyze", "transfer", str(root), "--layout", "tissuenet", "--split", "test",
                 "--pred-nuclei", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
