"""The watershed baseline: the recipe on shapes with known answers, tuning, config and weight errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.methods.adapters.watershed import PARAMS_FILE, WatershedConfig, WatershedMethod, WatershedParams, segment

SMALL_GRID = dict(sigmas=(0.0,), threshold_scales=(1.0,), distance_sigmas=(0.0,), min_distance_fractions=(0.3,))


def _disks(shape, centres, radius) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (labels == 0)] = k
    return labels


def test_two_touching_disks_are_split_by_the_distance_watershed():
    # Disks of radius 10, centres 16 px apart: one foreground blob with two distance maxima.
    truth = _disks((40, 60), [(20, 20), (20, 36)], 10)
    image = (truth > 0).astype(float)
    split = segment(image, WatershedParams(min_distance=5))
    assert split.max() == 2 and np.array_equal(split > 0, truth > 0)
    for k in (1, 2):  # each object is one of the disks, up to the pixels on the dividing line
        best = max(np.count_nonzero((split == k) & (truth == j)) for j in (1, 2))
        assert best >= 0.95 * np.count_nonzero(split == k)
    merged = segment(image, WatershedParams(min_distance=20))  # one seed: one object
    assert merged.max() == 1 and np.array_equal(merged > 0, truth > 0)


def test_a_component_without_a_seed_still_becomes_an_object():
    # The small square's distance maximum lies within min_distance of the large one's: no seed of its own.
    image = np.zeros((30, 40))
    image[5:25, 5:25] = 1.0
    image[12:16, 28:32] = 1.0
    labels = segment(image, WatershedParams(min_distance=25))
    assert labels.max() == 2
    assert np.count_nonzero(labels == labels[14, 30]) == 16 and np.count_nonzero(labels == labels[15, 15]) == 400


def test_min_size_drops_small_objects_and_flat_images_give_nothing():
    image = np.zeros((30, 40))
    image[5:15, 5:15] = 1.0  # 100 px
    image[20:23, 30:33] = 1.0  # 9 px
    kept = segment(image, WatershedParams(min_distance=3, min_size=10))
    assert kept.max() == 1 and np.count_nonzero(kept) == 100
    assert np.count_nonzero(segment(image, WatershedParams(min_distance=3))) == 109
    assert not segment(np.full((10, 10), 7.0), WatershedParams()).any()
    assert not segment(np.zeros((10, 10), np.uint8), WatershedParams()).any()


def test_polarity_dark_objects_on_a_bright_background():
    truth = _disks((40, 40), [(20, 20)], 8)
    dark = np.where(truth > 0, 0.2, 0.9)
    found = segment(dark, WatershedParams(bright=False, min_distance=5))
    assert np.array_equal(found > 0, truth > 0)
    # Read as bright objects, the background is the object, and its hole (the disk) is filled.
    assert segment(dark, WatershedParams(bright=True, min_distance=5)).all()


def test_holes_are_filled():
    image = np.zeros((30, 30))
    image[5:25, 5:25] = 1.0
    image[13:17, 13:17] = 0.0
    labels = segment(image, WatershedParams(min_distance=30))
    assert labels.max() == 1 and np.count_nonzero(labels) == 400


def _sample(name, labels, *, dark=False, seed=0) -> Sample:
    rng = np.random.default_rng(seed)
    fg, bg = (40, 200) if dark else (200, 40)
    image = np.clip(np.where(labels > 0, fg, bg) + rng.normal(0, 5, labels.shape), 0, 255).astype(np.uint8)
    return Sample(name, InstanceSet.from_label_image(labels), array=image)


def test_training_finds_dark_objects_and_segments_them_exactly():
    centres = [(12, 12), (12, 40), (36, 20), (38, 46)]
    train = [_sample("t", _disks((52, 60), centres, 7), dark=True)]
    test = _disks((52, 60), [(15, 30), (37, 14)], 7)
    method = WatershedMethod(WatershedConfig(**SMALL_GRID))
    history = method.train(train, [_sample("v", test, dark=True, seed=1)], seed=0)
    assert method.params.bright is False and history.info["params"]["bright"] is False
    assert history.epochs[0].extra == {"train_f1": 1.0, "settings_tried": 1}
    assert history.val_metric == "f1@0.5" and history.epochs[0].val_score == 1.0
    assert history.epochs[0].loss == pytest.approx(0.0)
    # 5 % of areas is 149 px (every disk of radius 7 is 149 px): objects under 0.3 x 149 px are dropped.
    assert method.params.min_size == int(0.3 * 149)
    found = method.predict(_sample("p", test, dark=True, seed=2).load_image())
    assert len(found) == 2 and sorted(found.areas.tolist()) == [149, 149]


def test_training_is_deterministic_and_the_grid_is_counted():
    train = [_sample("t", _disks((52, 60), [(12, 12), (12, 30), (36, 20)], 7))]
    config = WatershedConfig(sigmas=(0.0, 1.0), threshold_scales=(0.9, 1.0), distance_sigmas=(0.0,),
                             min_distance_fractions=(0.2, 0.6))
    a, b = WatershedMethod(config), WatershedMethod(config)
    ha, hb = a.train(train, seed=0), b.train(train, seed=1)
    assert a.params == b.params and ha.epochs[0].extra == hb.epochs[0].extra
    assert ha.epochs[0].extra["settings_tried"] == 2 * 2 * 1 * 2
    assert ha.val_metric is None and ha.epochs[0].val_score is None


def test_training_without_images_or_objects_is_a_data_error():
    method = WatershedMethod(WatershedConfig(**SMALL_GRID))
    with pytest.raises(DataError, match="no training images"):
        method.train([])
    with pytest.raises(DataError, match="no annotated object"):
        method.train([_sample("empty", np.zeros((20, 20), np.int32))])


@pytest.mark.parametrize(
    "change, problem",
    [
        (dict(flatten="biggest-first"), "unknown flatten policy"),
        (dict(tune_ious=(0.3, 0.5)), r"tune_ious must lie in \[0.5, 1\)"),
        (dict(tune_ious=(0.5, 1.0)), r"tune_ious must lie in \[0.5, 1\)"),
        (dict(tune_ious=()), r"tune_ious must lie in \[0.5, 1\)"),
        (dict(sigmas=()), "sigmas must list at least one value"),
        (dict(min_distance_fractions=()), "min_distance_fractions must list at least one value"),
    ],
)
def test_bad_configs_are_refused(change, problem):
    with pytest.raises(ValueError, match=problem):
        WatershedConfig(**change)


def test_weights_round_trip_and_bad_files_name_the_file(tmp_path):
    method = WatershedMethod()
    method.params = WatershedParams(bright=False, sigma=1.0, threshold_scale=0.9, distance_sigma=2.0,
                                    min_distance=4, min_size=12)
    method.save_weights(tmp_path)
    again = WatershedMethod()
    again.load_weights(tmp_path)
    assert again.params == method.params
    path = tmp_path / PARAMS_FILE
    for content, problem in (("{bad json", "bad watershed parameters"),
                             (json.dumps({"sigma": 1.0, "radius": 3}), "bad watershed parameters")):
        path.write_text(content)
        with pytest.raises(DataError, match=problem) as info:
            WatershedMethod().load_weights(tmp_path)
        assert info.value.path == str(path)
    path.unlink()
    with pytest.raises(DataError, match="watershed parameters file missing") as info:
        WatershedMethod().load_weights(tmp_path)
    assert info.value.path == str(path)
