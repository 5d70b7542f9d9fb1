"""The method contract, for every entry of METHODS: train, save, load, predict, same result after reload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellbench.instances import InstanceSet, flatten
from cellbench.matching import match_labels
from cellbench.methods import METHODS, config_from_dict, config_to_dict, get_method
from cellbench.methods.base import TrainHistory
from cellbench.methods.model_dir import load_model, save_model, train_summary
from cellbench.methods.tiling import TileConfig

# Small settings (as a config file would give them) so every method trains in seconds on tiny images.
FAST: dict[str, dict] = {
    "watershed": {"sigmas": [0.0, 1.0], "threshold_scales": [0.9, 1.0], "distance_sigmas": [0.0, 1.0],
                  "min_distance_fractions": [0.3, 0.5]},
    # An untrained-ish network: a low cellprob threshold and no flow check, so it still finds something.
    "cellpose": {"n_epochs": 1, "bsize": 64, "batch_size": 2, "min_train_masks": 1, "diam_mean": 12.0,
                 "cellprob_threshold": -6.0, "flow_threshold": 0.0},
    # The `tiny` backbone is a random small SAM meant for tests; thresholds off so it keeps what it finds.
    "cellseg1": {"backbone": "tiny", "tile_overlap": 16,
                 "train": {"epochs": 1, "patch_size": 64, "min_patches": 2, "max_positive": 4, "max_negative": 2,
                           "batch_size": 2, "grad_accum": 1, "min_cell_area": 20},
                 "inference": {"points_per_side": 4, "points_batch": 16, "pred_iou_thresh": -1e9,
                               "stability_thresh": 0.0, "max_area_fraction": 1.0}},
}
#: Import names a method's fast config needs beyond the core (its extra); missing ones skip, with the name.
NEEDS: dict[str, tuple[str, ...]] = {"cellpose": ("torch", "cellpose"), "cellseg1": ("torch", "segment_anything")}
ALL = sorted(METHODS)


def fast_config(name: str):
    for module in NEEDS.get(name, ()):
        pytest.importorskip(module)
    cls = get_method(name)
    return config_from_dict(cls.Config, FAST[name])


def make(name: str):
    return get_method(name)(fast_config(name))


def same(a: InstanceSet, b: InstanceSet) -> bool:
    return a.shape == b.shape and [(i.bbox, i.mask.tobytes(), i.score) for i in a] == \
        [(i.bbox, i.mask.tobytes(), i.score) for i in b]


def test_every_method_has_a_fast_config_here():
    assert sorted(FAST) == ALL, "add a fast config to FAST for every METHODS entry (and none for others)"
    assert set(NEEDS) <= set(METHODS)


@pytest.fixture(scope="module", params=ALL)
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
    assert isinstance(history.val_metric, str) and history.val_metric  # validation images were given
    scores = [e.val_score for e in history.epochs if e.val_score is not None]
    assert scores and all(np.isfinite(scores))
    if history.val_metric.startswith("f1"):
        assert all(0.0 <= v <= 1.0 for v in scores)
    assert all(np.isfinite(e.loss) for e in history.epochs) and history.wall_s > 0


def test_save_load_predict_gives_the_same_result(trained, blobs, tmp_path):
    method, history, _ = trained
    image = blobs["test"][0].load_image()
    found = method.predict(image)
    assert isinstance(found, InstanceSet) and found.shape == image.shape[:2]
    assert len(found) > 0  # so that "the same after reload" compares something

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


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip_through_json(name):
    config = fast_config(name)
    cls = get_method(name)
    assert isinstance(config, cls.Config) and config != cls.Config()
    again = config_from_dict(cls.Config, json.loads(json.dumps(config_to_dict(config))))
    assert again == config
    assert config_from_dict(cls.Config, {}) == cls.Config()


def test_watershed_learns_to_segment_blobs(blobs):
    method = make("watershed")
    method.train(blobs["train"], seed=0)
    test = blobs["test"][0]
    pred = flatten(method.predict(test.load_image())).labels
    assert match_labels(flatten(test.instances).labels, pred, (0.5,))[0].f1 >= 0.9


def test_untrained_prediction_is_refused_for_cellpose(blobs):
    method = make("cellpose")
    with pytest.raises(ValueError, match="train or load"):
        method.predict(blobs["test"][0].load_image())
