"""The method contract, for every method: train, save, load, predict, same result after reload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellbench.instances import InstanceSet, flatten
from cellbench.methods import METHODS, config_from_dict, config_to_dict, get_method
from cellbench.methods.base import TrainHistory
from cellbench.methods.model_dir import load_model, save_model, train_summary
from cellbench.methods.selection import f1_from_counts, match_counts
from cellbench.methods.tiling import TileConfig

# Small settings so every method trains in seconds on tiny images.
FAST = {
    "watershed": dict(sigmas=(0.0, 1.0), threshold_scales=(0.9, 1.0), distance_sigmas=(0.0, 1.0),
                      min_distance_fractions=(0.3, 0.5)),
    "cellpose": dict(n_epochs=2, bsize=64, batch_size=2, min_train_masks=1, diam_mean=12.0),
}
NEEDS = {"cellpose": "cellpose"}
MINE = sorted(FAST)


def make(name: str):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    cls = get_method(name)
    return cls(cls.Config(**FAST[name]))


def same(a: InstanceSet, b: InstanceSet) -> bool:
    return a.shape == b.shape and [(i.bbox, i.mask.tobytes(), i.score) for i in a] == \
        [(i.bbox, i.mask.tobytes(), i.score) for i in b]


def test_every_listed_method_is_covered_here():
    assert set(MINE) <= set(METHODS)


@pytest.fixture(scope="module", params=MINE)
def trained(request, blobs):
    """Each method trained once on the tiny set (with validation and a progress bar)."""
    method = make(request.param)
    calls = []

    def progress(iterable, **kw):
        calls.append(kw)
        return iterable

    history = method.train(blobs["train"], blobs["valid"], seed=0, progress=progress)
    return method, history, calls


def test_training_reports_history_and_progress(trained):
    method, history, calls = trained
    assert isinstance(history, TrainHistory) and history.epochs and calls
    assert history.val_metric == "f1@0.5" and 0.0 <= history.epochs[-1].val_score <= 1.0
    assert all(np.isfinite(e.loss) for e in history.epochs) and history.wall_s > 0


def test_save_load_predict_gives_the_same_result(trained, blobs, tmp_path):
    method, history, _ = trained
    image = blobs["test"][0].load_image()
    found = method.predict(image)
    assert isinstance(found, InstanceSet) and found.shape == image.shape[:2]

    record = save_model(method, tmp_path / "model", train_summary=train_summary(blobs["train"]), seed=0,
                        history=history, tiling=TileConfig(tile=64, overlap=32))
    assert json.loads((tmp_path / "model" / "model.json").read_text())["method"] == method.name
    assert record["train"]["n_images"] == 2 and record["history"]["epochs"]
    loaded = load_model(tmp_path / "model")
    assert loaded.name == method.name and loaded.seed == 0
    assert loaded.tiling == TileConfig(tile=64, overlap=32) and loaded.history == history
    assert loaded.method.config == method.config
    assert same(loaded.method.predict(image), found)
    tiled = loaded.predict(image)
    assert isinstance(tiled, InstanceSet) and tiled.shape == image.shape[:2]


def test_same_seed_same_result(trained, blobs):
    method, _, _ = trained
    again = make(method.name)
    again.train(blobs["train"], blobs["valid"], seed=0)
    image = blobs["test"][0].load_image()
    assert same(again.predict(image), method.predict(image))


@pytest.mark.parametrize("name", MINE)
def test_config_round_trip_through_json(name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    cls = get_method(name)
    config = cls.Config(**FAST[name])
    again = config_from_dict(cls.Config, json.loads(json.dumps(config_to_dict(config))))
    assert again == config
    assert config_from_dict(cls.Config, {}) == cls.Config()


def test_watershed_learns_to_segment_blobs(blobs):
    method = make("watershed")
    method.train(blobs["train"], seed=0)
    test = blobs["test"][0]
    pred = flatten(method.predict(test.load_image())).labels
    assert f1_from_counts([match_counts(flatten(test.instances).labels, pred)]) >= 0.9


def test_untrained_prediction_is_refused_for_cellpose(blobs):
    method = make("cellpose")
    with pytest.raises(ValueError, match="train or load"):
        method.predict(blobs["test"][0].load_image())
