"""maunet: saltfish's architecture on an smp encoder, its targets and loss, and (slow) learning on blobs."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.instances import flatten
from cellbench.matching import match_labels
from cellbench.methods.base import config_from_dict, merge_config
from cellbench.methods.adapters.maunet import MAUNetConfig, MAUNetMethod
from cellbench.methods.adapters.semantic.targets import INTERIOR


def needs_torch():
    pytest.importorskip("monai")
    pytest.importorskip("segmentation_models_pytorch")
    return pytest.importorskip("torch")


def test_defaults_are_saltfish_settings():
    cfg = MAUNetConfig()
    assert cfg.backbone == "resnet50" and cfg.encoder_weights is None and cfg.width == 24
    assert (cfg.train.patch_size, cfg.train.lr, cfg.train.lr_step, cfg.train.lr_gamma) == (512, 6e-4, 10, 0.95)
    assert (cfg.augment.zoom_prob, cfg.augment.zoom_min, cfg.augment.zoom_max) == (1.0, 0.25, 2.0)
    assert cfg.inference.scales == (1.0, 1.25, 1.5)
    assert (cfg.foreground_threshold, cfg.interior_threshold) == (0.7, 0.7)
    # a partial section keeps saltfish's other values, not the U-Net baseline's
    cfg = config_from_dict(MAUNetConfig, merge_config(MAUNetMethod.presets["cpu"], {"train": {"epochs": 3}}))
    assert cfg.backbone == "resnet18" and cfg.train.lr_step == 10 and cfg.augment.zoom_min == 0.25
    with pytest.raises(ValueError, match="divisible by 32"):
        config_from_dict(MAUNetConfig, {"train": {"patch_size": 100}})


def test_network_has_saltfish_shape():
    torch = needs_torch()
    net = MAUNetMethod(MAUNetConfig(backbone="resnet18")).build_network()
    assert [b.layer.conv1.conv.out_channels for b in net.skips] == [24, 24, 48, 96, 192, 384]
    assert len(net.class_decoder) == len(net.distance_decoder) == 5
    assert net.encoder.out_channels == [3, 64, 64, 128, 256, 512]
    out = net.eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 5, 64, 64)  # 4 class logits + the distance map


def test_unknown_encoder_is_a_data_error():
    needs_torch()
    with pytest.raises(DataError, match="no-such-encoder"):
        MAUNetMethod(MAUNetConfig(backbone="no-such-encoder")).build_network()


def test_targets_and_loss():
    torch = needs_torch()
    method = MAUNetMethod(MAUNetConfig(backbone="resnet18"))
    labels = np.zeros((64, 64), np.int32)
    labels[10:40, 10:40] = 1
    classes, distance = method.targets(labels)
    assert distance[25, 25] == pytest.approx(1.0) and (distance[labels == 0] == 0).all()
    assert classes[25, 25] == INTERIOR
    batch = {"classes": torch.from_numpy(classes.astype(np.int64))[None, None],
             "regression": torch.from_numpy(distance)[None, None]}
    logits = torch.full((1, 4, 64, 64), -20.0)
    for k in range(3):
        logits[0, k][batch["classes"][0, 0] == k] = 20.0
    perfect = torch.cat([logits, batch["regression"]], dim=1)
    wrong = torch.cat([logits.flip(1), 1 - batch["regression"]], dim=1)
    assert float(method.loss(perfect, batch)) < float(method.loss(wrong, batch))
    # the distance term alone: 0 for the exact map, mean |error| inside + mean |output| outside otherwise
    dist_only = float(method.loss(torch.cat([logits, batch["regression"] + 0.5], 1), batch)) - \
        float(method.loss(perfect, batch))
    assert dist_only == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_maunet_learns_to_segment_blobs(blobs):
    needs_torch()
    cfg = {"backbone": "resnet18", "width": 8, "threads": 1, "augment": {"zoom_min": 0.8, "zoom_max": 1.25},
           "train": {"patch_size": 64, "batch_size": 4, "epochs": 80, "steps_per_epoch": 2, "lr": 0.002},
           "inference": {"scales": [1.0]}}
    method = MAUNetMethod(config_from_dict(MAUNetConfig, cfg))
    method.train(blobs["train"], seed=0)
    test = blobs["test"][0]
    found = method.predict(test.load_image())
    assert match_labels(flatten(test.instances).labels, flatten(found).labels, (0.5,))[0].f1 >= 0.8
