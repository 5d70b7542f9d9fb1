"""mesmer: Mesmer's settings, its two-channel input, the PanopticNet's shape and its post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.methods.adapters.mesmer import MesmerConfig, MesmerMethod, MesmerPreprocess, mesmer_input
from cellbench.methods.adapters.semantic.targets import INTERIOR
from cellbench.methods.base import config_from_dict, merge_config


def needs_torch():
    pytest.importorskip("torchvision")
    return pytest.importorskip("torch")


def test_defaults_are_mesmers_settings():
    cfg = MesmerConfig()
    assert cfg.backbone == "resnet50" and cfg.compartment == "whole-cell" and cfg.channels == (0, 1)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs, cfg.train.weight_decay) == (4e-4, 8, 200, 0.0)
    assert (cfg.train.lr_step, cfg.train.lr_gamma, cfg.train.patch_size) == (1, 0.99, 256)
    assert (cfg.augment.zoom_min, cfg.augment.intensity_prob) == (0.7, 0.0)
    assert (cfg.radius, cfg.interior_threshold, cfg.interior_smooth, cfg.small_objects, cfg.fill_holes) == \
        (2, 0.2, 2.0, 15, 15)
    assert cfg.maxima == 0.075 and MesmerConfig(compartment="nuclear").maxima == 0.1
    assert MesmerConfig(maxima_threshold=0.3).maxima == 0.3
    cfg = config_from_dict(MesmerConfig, merge_config(MesmerMethod.presets["cpu"], {"channels": ["grey", None]}))
    assert cfg.backbone == "resnet18" and cfg.channels == ("grey", None) and cfg.train.lr == 4e-4


@pytest.mark.parametrize("values, message", [
    ({"train": {"patch_size": 100}}, "divisible by 32"),
    ({"channels": [0]}, "two entries"),
    ({"channels": [None, None]}, "at least one"),
    ({"channels": ["red", 1]}, "two entries"),
    ({"compartment": "cytoplasm"}, "compartment"),
    ({"backbone": "vgg16"}, "backbone"),
])
def test_config_refuses(values, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(MesmerConfig, values)


def test_input_is_nuclear_and_membrane_channels_preprocessed():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, size=(64, 64, 3)).astype(np.uint16)
    image[5, 5, 0] = 60000  # a hot pixel: clipped at the 99.9th percentile, it does not squash the rest
    x = mesmer_input(image, (0, 2), MesmerPreprocess(clahe_kernel=0))
    assert x.shape == (64, 64, 2) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0 and x[..., 0].mean() > 0.3
    ref = image[..., 2].astype(np.float32)
    assert np.allclose(x[..., 1], (ref - ref.min()) / (ref.max() - ref.min()), atol=0.02)
    grey = mesmer_input(image[..., 0], ("grey", None), MesmerPreprocess())
    assert not grey[..., 1].any() and grey[..., 0].max() <= 1.0
    assert not mesmer_input(np.full((8, 8), 7), (0, None), MesmerPreprocess()).any()  # constant: zeros
    one = mesmer_input(image[..., 0], (0, 1), MesmerPreprocess())  # one channel: the second input is blank
    assert one[..., 0].any() and not one[..., 1].any()
    with pytest.raises(DataError, match="channel 2"):
        mesmer_input(image[..., :2], (0, 2), MesmerPreprocess())


def test_panopticnet_has_mesmers_heads_and_keeps_the_size():
    torch = needs_torch()
    net = MesmerMethod(MesmerConfig(backbone="resnet18")).build_network()
    assert net.channels.in_channels == 4 and net.channels.out_channels == 3  # 2 channels + 2 location channels
    assert [h.dense[-1].out_channels for h in net.heads] == [1, 3]
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 2, 96, 64))
    # the inner distance's ReLU is applied by the loss and at prediction, so a negative output keeps a gradient
    assert out.shape == (1, 4, 96, 64)
    no_location = MesmerMethod(MesmerConfig(backbone="resnet18", location=False)).build_network()
    assert no_location.channels.in_channels == 2


def test_backbone_weights_load_from_a_torchvision_resnet(tmp_path):
    torch = needs_torch()
    from torchvision.models import resnet18

    trunk = resnet18(weights=None)
    torch.save(trunk.state_dict(), tmp_path / "r18.pt")
    method = MesmerMethod(MesmerConfig(backbone="resnet18", backbone_weights=str(tmp_path / "r18.pt")))
    net = method.build_network(pretrained=True)
    assert torch.equal(net.stem[0].weight, trunk.conv1.weight) and torch.equal(net.stem[4][0].conv1.weight,
                                                                                 trunk.layer1[0].conv1.weight)
    assert torch.equal(net.layer4[1].bn2.running_var, trunk.layer4[1].bn2.running_var)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="no ResNet tensors"):
        MesmerMethod(MesmerConfig(backbone="resnet18", backbone_weights=str(tmp_path / "other.pt"))).build_network(
            pretrained=True)


def test_instances_of_perfect_maps_are_the_cells():
    lab = np.zeros((40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    for k, (cy, cx) in enumerate([(12, 12), (12, 24), (28, 40), (28, 50)], start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = k  # disks of radius 6; the first two and last two touch
    method = MesmerMethod(MesmerConfig(compartment="nuclear", interior_smooth=0))
    classes, distance = method.targets(lab)
    logits = np.where(np.arange(3)[:, None, None] == classes[None], 10.0, 0.0)
    labels, p_interior = method.instances(np.concatenate([distance[None], logits]))
    assert labels.max() == 4 and p_interior.shape == lab.shape
    for k in range(1, 5):
        found = np.bincount(labels[lab == k]).argmax()
        assert found > 0 and ((labels == found) & (lab == k)).sum() / (lab == k).sum() > 0.6
    assert ((labels > 0) <= (classes == INTERIOR)).all()  # interior > 0.2: the edge class stays out


def test_the_inner_distance_head_cannot_die():
    """A head whose outputs are all negative still learns where cells are (a ReLU output would pass no gradient),
    and the loss equals the MSE of the ReLU output wherever that output is positive or the target 0."""
    torch = pytest.importorskip("torch")
    from cellbench.methods.adapters.mesmer import relu_regression_loss

    z = torch.full((1, 1, 4, 4), -0.5, requires_grad=True)
    target = torch.zeros(1, 1, 4, 4)
    target[..., 1:3, 1:3] = 0.8
    relu_regression_loss(z, target).backward()
    assert (z.grad[..., 1:3, 1:3] < 0).all() and (z.grad[..., 0, :] == 0).all()  # pushed up only inside cells
    a = torch.tensor([0.3, 1.2, -0.4, 0.0])
    t = torch.tensor([0.5, 0.0, 0.0, 0.0])
    assert float(relu_regression_loss(a, t)) == pytest.approx(float(((a.clamp(min=0) - t) ** 2).mean()))
