"""One prediction path: a run's cached model predicts in the runner exactly as `cellbench predict` predicts with it."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from cellbench.cli.main import main
from cellbench.data.images import read_image
from cellbench.instances import flatten
from cellbench.methods.model_dir import load_model
from cellbench.methods.tiling import TileConfig, predict_tiled, tile_windows
from cellbench.methods.adapters.watershed import WatershedConfig, WatershedMethod
from cellbench.runner import (
    PredictionCache,
    ResultStore,
    expand_grid,
    experiment_from_dict,
    run_entry,
    run_experiment,
)

FAST = {"sigmas": [1.0], "threshold_scales": [0.9, 1.0], "distance_sigmas": [1.0],
        "min_distance_fractions": [0.3, 0.5]}
TILING = {"tile": 40, "overlap": 20}  # cuts the 64 x 64 test images into 3 x 3 tiles


def _experiment(data) -> dict:
    return {
        "name": "paths",
        "datasets": {"tiny": {"layout": "dsb", "path": str(data), "train": "train", "test": ["test"]}},
        "methods": {"ws": {"method": "watershed", "config": FAST, "tiling": TILING}},
        "regimes": {"zero-shot": {"train_images": 0}, "one": {"train_images": 1}},
    }


def test_runner_predictions_equal_cellbench_predict(tmp_path, tiny_data):
    exp = experiment_from_dict(_experiment(tiny_data))
    summary = run_experiment(exp, tmp_path / "run")
    assert (summary.n_run, summary.n_failed) == (2, 0)
    zero_shot, trained = expand_grid(exp)
    images = sorted((tiny_data / "test" / "images").iterdir())
    tiling = TileConfig(**TILING)

    # the trained grid entry's cache holds a model directory that `cellbench predict` takes as it is
    cache = PredictionCache(tmp_path / "run" / "cache", trained.key)
    record = json.loads((cache.model_dir / "model.json").read_text())
    assert record["method"] == "watershed" and record["tiling"] == TILING and record["seed"] == 0
    assert len(record["train"]["images"]) == 1 and record["train"]["source"]["train_images"] == 1
    out = tmp_path / "pred"
    assert main(["predict", str(cache.model_dir), "--images", str(tiny_data / "test" / "images"),
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "cellbench-predict.json").read_text())
    assert manifest["tiling"] == TILING

    model = load_model(cache.model_dir)
    whole_differs = []
    for path, entry in zip(images, manifest["images"]):
        image = read_image(path)
        assert len(tile_windows(image.shape, tiling)) == 9
        runner, _ = cache.load_prediction("test", path.stem)
        assert entry["n_instances"] == len(runner) > 0
        cli = tifffile.imread(out / "labels" / f"{path.stem}.tif")
        np.testing.assert_array_equal(flatten(runner, model.flatten).labels, cli)
        whole = flatten(model.method.predict(image), model.flatten).labels
        whole_differs.append(not np.array_equal(whole, cli))
    # the tiling matters on these images: a runner predicting whole images would not match
    assert any(whole_differs)

    # the zero-shot grid entry predicts with the untrained method and the same tiling
    zero_cache = PredictionCache(tmp_path / "run" / "cache", zero_shot.key)
    assert not zero_cache.has_model()
    untrained = WatershedMethod(WatershedConfig(**{k: tuple(v) for k, v in FAST.items()}))
    for path in images:
        image = read_image(path)
        runner, _ = zero_cache.load_prediction("test", path.stem)
        expected = predict_tiled(untrained.predict, image, tiling)
        np.testing.assert_array_equal(flatten(runner).labels, flatten(expected).labels)

    with ResultStore.open(tmp_path / "run" / "results.sqlite") as store:
        configs = [e.config["method"] for e in store.entries(1)]
    assert [c["resolved_tiling"] for c in configs] == [TILING, TILING]


def test_resumed_entry_predicts_with_the_cached_model(tmp_path, tiny_data):
    """A grid entry whose predictions were lost re-predicts from the cached model directory, same result."""
    exp = experiment_from_dict(_experiment(tiny_data))
    run_experiment(exp, tmp_path / "run")
    trained = expand_grid(exp)[1]
    cache = PredictionCache(tmp_path / "run" / "cache", trained.key)
    before = {p.stem: cache.load_prediction("test", p.stem)[0] for p in (tiny_data / "test" / "images").iterdir()}
    model_mtime = (cache.model_dir / "model.json").stat().st_mtime_ns
    for f in (cache.folder / "pred" / "test").iterdir():
        f.unlink()

    outcome = run_entry(trained, cache_root=tmp_path / "run" / "cache")
    assert outcome.status == "done", outcome.error
    record = json.loads((cache.model_dir / "model.json").read_text())
    assert outcome.train["resumed_from_cache"] is True
    assert outcome.train["images"] == [i["name"] for i in record["train"]["images"]]
    assert outcome.train["wall_s"] == record["extra"]["runner"]["train_wall_s"]
    assert (cache.model_dir / "model.json").stat().st_mtime_ns == model_mtime  # not retrained
    for name, instances in before.items():
        again, _ = cache.load_prediction("test", name)
        np.testing.assert_array_equal(flatten(again).labels, flatten(instances).labels)
