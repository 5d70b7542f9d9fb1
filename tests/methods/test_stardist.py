"""StarDist adapter: pretrained model folders and zips, channels, and the errors a user can meet.

Training, saving, reloading and seed determinism are checked for every method in test_contract.py.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("stardist")

from cellbench.errors import DataError  # noqa: E402
from cellbench.methods.adapters.stardist import (  # noqa: E402
    StarDistConfig,
    StarDistMethod,
    _channels,
    _normalize,
    unpack_model_folder,
)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random tiny StarDist model written by StarDist itself, as its registry's zips hold one:
    config.json, thresholds.json and weights_best.h5 (legacy Keras HDF5)."""
    from stardist.models import Config2D, StarDist2D

    base = tmp_path_factory.mktemp("stardist-models")
    config = Config2D(n_rays=8, grid=(2, 2), n_channel_in=1, unet_n_depth=2, unet_n_filter_base=8,
                      net_conv_after_unet=16, train_tensorboard=False)
    model = StarDist2D(config, name="tiny_fluo", basedir=str(base))
    # A random network finds an object at every pixel; shift the probability head's bias so that
    # about 1 % of the grid points of the test image pass 0.3: a few objects, quick to suppress.
    prob = model.keras_model.predict(_normalize(image_with_blobs(), 1.0, 99.8)[None, ..., None], verbose=0)[0]
    p = np.clip(prob.ravel(), 1e-6, 1 - 1e-6)
    head = model.keras_model.get_layer("prob")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias - np.quantile(np.log(p / (1 - p)), 0.99) + np.log(0.3 / 0.7)])
    model.keras_model.save_weights(str(model.logdir / "weights_best.h5"))
    (model.logdir / "thresholds.json").write_text(json.dumps({"prob": 0.3, "nms": 0.35}))
    return model.logdir, model


def zip_folder(folder, target, *, prefix=""):
    with zipfile.ZipFile(target, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, prefix + path.name)
    return target


def image_with_blobs() -> np.ndarray:
    yy, xx = np.mgrid[:96, :96]
    image = np.zeros((96, 96), np.float32)
    for cy, cx in ((20, 20), (30, 70), (70, 40), (75, 80)):
        image += ((yy - cy) ** 2 + (xx - cx) ** 2 < 64) * 200.0
    return image + np.random.default_rng(0).normal(0, 5, image.shape).astype(np.float32)


def test_pretrained_zip_predicts_as_stardist_does(tiny_folder, tmp_path):
    """A zipped model folder served as a local path: zero-shot predictions are StarDist's own, with
    its shipped thresholds and object probabilities as scores."""
    folder, model = tiny_folder
    archive = zip_folder(folder, tmp_path / "tiny.zip")
    method = StarDistMethod(StarDistConfig(pretrained=str(archive)))
    image = image_with_blobs()
    found = method.predict(image)

    x = _normalize(image, 1.0, 99.8)
    labels, details = model.predict_instances(x, prob_thresh=0.3, nms_thresh=0.35, show_tile_progress=False)
    assert found.shape == image.shape
    assert len(found) == len(np.unique(labels)) - 1
    assert sorted(i.score for i in found) == pytest.approx(sorted(details["prob"][: len(found)].tolist()))
    assert method._model.thresholds.prob == 0.3 and method._model.thresholds.nms == 0.35

    method.save_weights(tmp_path)  # a zero-shot model saves like a trained one
    again = StarDistMethod(StarDistConfig())
    again.load_weights(tmp_path)
    assert [(i.bbox, i.score) for i in again.predict(image)] == [(i.bbox, i.score) for i in found]


def test_pretrained_folder_is_read_in_place(tiny_folder, tmp_path):
    folder, _ = tiny_folder
    assert unpack_model_folder(folder, tmp_path) == folder


def test_zip_with_the_folder_inside_is_unpacked(tiny_folder, tmp_path):
    folder, _ = tiny_folder
    archive = zip_folder(folder, tmp_path / "tiny.zip", prefix="tiny_fluo/")
    found = unpack_model_folder(archive, tmp_path / "out")
    assert found == (tmp_path / "out" / "tiny_fluo").resolve()
    assert sorted(p.name for p in found.iterdir()) == sorted(p.name for p in folder.iterdir())


def test_zip_members_outside_the_folder_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../config.json", "{}")
    with pytest.raises(DataError, match="outside"):
        unpack_model_folder(archive, tmp_path / "out")


def test_zip_without_a_model_folder_is_refused(tmp_path):
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "nothing here")
    with pytest.raises(DataError, match="config.json"):
        unpack_model_folder(archive, tmp_path / "out")


def test_missing_pretrained_path_names_it(tmp_path):
    method = StarDistMethod(StarDistConfig(pretrained=str(tmp_path / "nope.zip")))
    with pytest.raises(DataError, match="nope.zip"):
        method.predict(np.zeros((32, 32), np.float32))


def test_weights_that_do_not_fit_the_config_are_refused(tiny_folder, tmp_path):
    folder, _ = tiny_folder
    for name in ("weights_best.h5", "thresholds.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_rays": 16}))
    with pytest.raises(DataError, match="weights do not fit"):
        StarDistMethod(StarDistConfig(pretrained=str(tmp_path))).predict(np.zeros((32, 32), np.float32))


def test_bad_thresholds_file_is_named(tiny_folder, tmp_path):
    folder, _ = tiny_folder
    for name in ("weights_best.h5", "config.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "thresholds.json").write_text(json.dumps({"prob": 2.0, "nms": 0.4}))
    with pytest.raises(DataError, match="thresholds.json.*(0, 1)"):
        StarDistMethod(StarDistConfig(pretrained=str(tmp_path))).predict(np.zeros((32, 32), np.float32))


def test_untrained_prediction_is_refused():
    with pytest.raises(DataError, match="train or load"):
        StarDistMethod().predict(np.zeros((32, 32), np.float32))


def test_channels_fit_the_network():
    grey = np.arange(12.0).reshape(3, 4)
    rgb = np.stack([grey, grey + 3, grey + 6], axis=-1)
    assert _channels(grey, 1).shape == (3, 4)
    assert _channels(grey, 3).shape == (3, 4, 3)
    np.testing.assert_allclose(_channels(rgb, 1), grey + 3)
    assert _channels(rgb[..., :1], 1).shape == (3, 4)
    with pytest.raises(DataError, match="2 channel"):
        _channels(rgb, 2)


def test_config_checks_patch_divisibility():
    with pytest.raises(ValueError, match="divisible"):
        StarDistConfig(train_patch_size=(100, 100))
    StarDistConfig(train_patch_size=(128, 96))


def test_training_image_smaller_than_a_patch_is_named(blobs):
    method = StarDistMethod(StarDistConfig(train_patch_size=(128, 128), train_epochs=1, train_steps_per_epoch=1))
    with pytest.raises(DataError, match=r"blobs\d.*smaller than train_patch_size"):
        method.train(blobs["train"], seed=0)
