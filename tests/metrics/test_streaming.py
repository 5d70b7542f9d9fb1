"""Streaming evaluation: per-image records to a file as they come, the same figures as in memory, nothing
half-written on error, memory that does not grow with the images."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.metrics import Evaluator, evaluate, read_records

from .helpers import dsb_pair, jitter, random_instances


def _pairs(n: int):
    rng = np.random.default_rng(0)
    for k in range(n):
        gt = random_instances(rng, n=8 + k % 5, n_classes=2)
        yield gt, jitter(rng, gt, n_extra=k % 3)


OPTIONS = {"thresholds": (0.5, 0.75), "metrics": ["matching", "dice", "aji", "aji_plus", "pq_canonical"],
           "per_class": True, "boundary_px": 2}


def test_per_image_file_gives_the_same_figures_and_records(tmp_path):
    pairs = list(_pairs(7))
    in_memory = evaluate([g for g, _ in pairs], [p for _, p in pairs], **OPTIONS)
    out = tmp_path / "sub" / "records.jsonl"
    streamed = evaluate((g for g, _ in pairs), (p for _, p in pairs), names=(f"image_{k}" for k in range(7)),
                        per_image=out, **OPTIONS)
    assert streamed.images == () and streamed.per_image_file == out
    assert json.dumps(streamed.to_dict()) == json.dumps(in_memory.to_dict())
    assert list(read_records(out)) == in_memory.to_dict()["per_image"]
    assert streamed.pooled(0.75) == in_memory.pooled(0.75)
    assert streamed.per_image_rows() == in_memory.per_image_rows()


@pytest.mark.parametrize("n", [0, 1, 3])
def test_write_json_is_the_text_of_to_dict(tmp_path, n):
    gt, pred = dsb_pair(0)
    res = evaluate([gt] * n, [pred] * n, thresholds=[0.5, 0.9], per_image=tmp_path / "r.jsonl")
    res.write_json(tmp_path / "r.json", settings={"gt": "G"})
    d = res.to_dict()
    d["settings"]["gt"] = "G"
    assert (tmp_path / "r.json").read_text() == json.dumps(d, indent=2)


def test_an_error_leaves_no_per_image_file(tmp_path):
    gt, pred = dsb_pair(0)
    out = tmp_path / "r.jsonl"
    with pytest.raises(DataError, match="non-integer"):
        evaluate([gt, gt, gt.astype(float)], [pred, pred, pred], per_image=out)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="differ in number: one of them ends after 2"):
        evaluate(iter([gt, gt]), iter([pred, pred, pred]), per_image=out)
    assert list(tmp_path.iterdir()) == []
    ev = Evaluator(per_image=out)
    ev.update(gt, pred)
    assert not out.exists()  # written under a hidden name until compute()
    ev.compute()
    assert out.exists()
    with pytest.raises(DataError, match="compute\\(\\) was called"):
        ev.update(gt, pred)


def test_memory_does_not_grow_with_the_images(tmp_path):
    """Per image, only the averaged values stay (8 bytes each): far below one image's result."""
    gt, pred = dsb_pair(0)

    def peak(n: int) -> int:
        ev = Evaluator(metrics=["matching", "dice", "aji"], per_image=tmp_path / f"{n}.jsonl")
        tracemalloc.start()
        for _ in range(n):
            ev.update(gt, pred)
        kept = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        ev.compute()
        return kept

    per_image = (peak(60) - peak(20)) / 40
    assert per_image < 1000, per_image  # ~30 values x 8 bytes, plus the growth of their arrays
