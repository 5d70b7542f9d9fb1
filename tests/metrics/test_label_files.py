"""Label-image files scored a band of rows at a time: exactly the numbers of the whole arrays, in bounded memory."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import tifffile

import cellbench.data.label_file as label_file
from cellbench.data.label_file import LabelFile
from cellbench.errors import DataError
from cellbench.matching import overlaps_from_labels
from cellbench.metrics import evaluate
from cellbench.metrics.boundary import drop_boundary_labels
from cellbench.metrics.label_files import label_file_overlaps

WRITES = {  # how each side is stored: tiles, strips, compressed or not, byte order
    "tiles": {"tile": (16, 32), "compression": "zlib", "predictor": True},
    "strips": {"rowsperstrip": 7},
    "one-strip": {},
    "compressed-strips": {"compression": "zlib", "rowsperstrip": 5},
    "big-endian-tiles": {"tile": (32, 16), "byteorder": ">"},
}


def _blobs(rng, shape, n, dtype, step=1):
    """Discs of random size, many cut by any band border; ids with gaps (``step``)."""
    lab = np.zeros(shape, dtype)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k in range(n):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(2, 12)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (k + 1) * step
    return lab


def _pair(rng, shape=(83, 101)):
    gt = _blobs(rng, shape, 40, np.uint16, step=3)
    pred = np.roll(_blobs(rng, shape, 35, np.uint32, step=7), (1, -2), axis=(0, 1))
    pred[gt == 3] = 60000  # one prediction over a cut GT cell
    return gt, pred


def _write(path, labels, how):
    tifffile.imwrite(path, labels, **WRITES[how])
    return LabelFile.open(path)


@pytest.mark.parametrize("gt_how, pred_how", [("tiles", "strips"), ("one-strip", "compressed-strips"),
                                              ("big-endian-tiles", "tiles"), ("strips", "one-strip")])
def test_banded_overlaps_equal_the_whole_arrays(tmp_path, gt_how, pred_how):
    rng = np.random.default_rng(len(gt_how) * 7 + len(pred_how))
    for trial in range(3):
        gt, pred = _pair(rng)
        g, p = _write(tmp_path / f"g{trial}.tif", gt, gt_how), _write(tmp_path / f"p{trial}.tif", pred, pred_how)
        assert g.banded and p.banded
        for px in (0, 2, 5):
            ref = overlaps_from_labels(drop_boundary_labels(gt, px), drop_boundary_labels(pred, px))[0]
            for rows in (1, 3, 16, 40, 1000):
                got = label_file_overlaps(g, p, boundary_px=px, rows=rows)
                for field in ("gt_area", "pred_area", "gt_index", "pred_index", "intersection"):
                    a, b = getattr(ref, field), getattr(got, field)
                    assert a.dtype == b.dtype and np.array_equal(a, b), (field, px, rows)


def test_evaluate_files_gives_the_numbers_of_the_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(label_file, "BAND_ROWS", 5)
    rng = np.random.default_rng(11)
    pairs = [_pair(rng, shape) for shape in ((83, 101), (40, 40), (97, 64))]
    pairs.append((np.zeros((20, 30), np.uint16), np.zeros((20, 30), np.uint16)))
    files = [(_write(tmp_path / f"g{k}.tif", g, "tiles"), _write(tmp_path / f"p{k}.tif", p, "strips"))
             for k, (g, p) in enumerate(pairs)]
    options = {"thresholds": (0.5, 0.7, 0.9), "boundary_px": 2,
               "metrics": ["matching", "dice", "aji", "aji_plus", "pq_canonical"]}
    arrays = evaluate([g for g, _ in pairs], [p for _, p in pairs], **options).to_dict()
    banded = evaluate((g for g, _ in files), (p for _, p in files), **options).to_dict()
    assert json.dumps(banded) == json.dumps(arrays)
    # Per class (instances) reads the files whole: the same numbers again.
    assert evaluate([g for g, _ in files], [p for _, p in files], per_class=True).to_dict()["pooled"] == \
        evaluate([g for g, _ in pairs], [p for _, p in pairs], per_class=True).to_dict()["pooled"]


def test_a_large_pair_is_scored_in_bands_not_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(label_file, "BAND_ROWS", 64)
    gt = np.kron(np.arange(1, 40 * 40 + 1, dtype=np.int32).reshape(40, 40), np.ones((50, 50), np.int32))
    tifffile.imwrite(tmp_path / "g.tif", gt, tile=(64, 64), compression="zlib")
    tifffile.imwrite(tmp_path / "p.tif", np.roll(gt, 3, axis=1), rowsperstrip=16)
    g, p = LabelFile.open(tmp_path / "g.tif"), LabelFile.open(tmp_path / "p.tif")
    tracemalloc.start()
    res = evaluate([g], [p], thresholds=[0.5], metrics=["matching", "dice", "aji"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.pooled(0.5).tp == 1600
    assert peak < gt.nbytes / 2, peak  # one 16 MB image would not fit; bands of 64 rows do


def test_bad_label_files_are_named(tmp_path):
    labels = np.arange(24, dtype=np.int32).reshape(4, 6)
    tifffile.imwrite(tmp_path / "float.tif", labels.astype(np.float32))
    with pytest.raises(DataError, match="non-integer dtype float32") as err:
        LabelFile.open(tmp_path / "float.tif")
    assert err.value.path == str(tmp_path / "float.tif")
    labels[3, 5] = -4
    neg = _write(tmp_path / "neg.tif", labels, "strips")
    with pytest.raises(DataError, match=r"negative ids \(smallest -4\)") as err:
        label_file_overlaps(neg, neg, rows=1)
    assert err.value.path == str(tmp_path / "neg.tif")
    small = _write(tmp_path / "small.tif", labels[:3], "strips")
    with pytest.raises(DataError, match=r"small.tif is \(3, 6\)"):
        evaluate([neg], [small])
    with pytest.raises(DataError, match="not found"):
        LabelFile.open(tmp_path / "missing.tif")
