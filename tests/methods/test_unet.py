"""unet: the MONAI U-Net baseline's config, network, weights files and (slow) learning on blobs."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.instances import flatten
from cellbench.matching import match_labels
from cellbench.methods.base import config_from_dict, merge_config
from cellbench.methods.adapters.unet import UNetConfig, UNetMethod

SMALL = {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "threads": 1,
         "train": {"patch_size": 64, "batch_size": 2}}


def test_defaults_are_the_neurips_baseline():
    cfg = UNetConfig()
    assert cfg.channels == (16, 32, 64, 128, 256) and cfg.strides == (2, 2, 2, 2) and cfg.num_res_units == 2
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.patch_size) == (6e-4, 8, 256)
    assert (cfg.augment.zoom_prob, cfg.augment.zoom_min, cfg.augment.zoom_max) == (0.15, 0.8, 1.5)
    assert (cfg.preprocess.low, cfg.preprocess.high) == (1.0, 99.0)


def test_config_refuses_what_the_network_cannot_take():
    with pytest.raises(ValueError, match="divisible"):
        config_from_dict(UNetConfig, {"train": {"patch_size": 100}})
    with pytest.raises(ValueError, match="one stride fewer"):
        UNetConfig(channels=(8, 16), strides=(2, 2))
    with pytest.raises(ValueError, match="loss weights"):
        UNetConfig(lambda_dice=0.0, lambda_ce=0.0)
    with pytest.raises(DataError, match="epochs"):
        config_from_dict(UNetConfig, {"epochs": 3})  # lives in the train section; the error says so


def test_cpu_preset_is_a_valid_config():
    cfg = config_from_dict(UNetConfig, merge_config(UNetMethod.presets["cpu"], {}))
    assert cfg.train.patch_size == 128 and cfg.train.lr == 6e-4  # a partial section keeps the other defaults


def test_network_is_monai_unet_with_residual_units():
    pytest.importorskip("monai")
    torch = pytest.importorskip("torch")
    from monai.networks.blocks import ResidualUnit

    net = UNetMethod(config_from_dict(UNetConfig, SMALL)).build_network()
    assert any(isinstance(m, ResidualUnit) for m in net.modules())
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_weights_of_another_config_or_not_torch_are_refused(tmp_path):
    pytest.importorskip("monai")
    pytest.importorskip("torch")
    small = UNetMethod(config_from_dict(UNetConfig, SMALL))
    small._network = small.build_network()
    small.save_weights(tmp_path)
    other = UNetMethod(config_from_dict(UNetConfig, {**SMALL, "channels": [4, 8, 16]}))
    with pytest.raises(DataError, match="do not fit"):
        other.load_weights(tmp_path)
    (tmp_path / "unet.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="not a readable torch weights file"):
        small.load_weights(tmp_path)
    with pytest.raises(DataError, match="unet weights file not found"):
        small.load_weights(tmp_path / "nowhere")


@pytest.mark.slow
def test_unet_learns_to_segment_blobs(blobs):
    pytest.importorskip("monai")
    method = UNetMethod(config_from_dict(UNetConfig, {**SMALL, "train": {
        "patch_size": 64, "batch_size": 4, "epochs": 60, "steps_per_epoch": 2, "lr": 0.005}}))
    method.train(blobs["train"], seed=0)
    test = blobs["test"][0]
    found = method.predict(test.load_image())
    assert found.scores is not None and np.all((found.scores > 0) & (found.scores <= 1))
    assert match_labels(flatten(test.instances).labels, flatten(found).labels, (0.5,))[0].f1 >= 0.9
