"""featurenet: DeepCell's bn_feature_net_2D layer plan, its exact receptive field, settings and post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.methods.adapters.featurenet import FeatureNetConfig, FeatureNetMethod, featurenet_layers
from cellbench.methods.base import config_from_dict


def test_defaults_are_the_papers_and_deepcells_settings():
    cfg = FeatureNetConfig()
    assert (cfg.receptive_field, cfg.conv_filters, cfg.dense_filters, cfg.local_norm) == (61, 64, 200, True)
    t = cfg.train
    assert (t.optimizer, t.lr, t.batch_size, t.epochs, t.momentum, t.lr_step, t.lr_gamma) == \
        ("sgd", 1e-3, 16, 25, 0.9, 1, 0.99)
    assert (cfg.interior_threshold, cfg.foreground_threshold, cfg.min_size) == (0.2, 0.9, 50)
    with pytest.raises(ValueError, match="receptive_field"):
        config_from_dict(FeatureNetConfig, {"receptive_field": 3})
    with pytest.raises(ValueError, match="optimizer"):
        config_from_dict(FeatureNetConfig, {"train": {"optimizer": "rmsprop"}})


@pytest.mark.parametrize("rf", [21, 31, 61, 81])
def test_layer_plan_adds_up_to_the_receptive_field(rf):
    layers = featurenet_layers(rf)
    assert 1 + sum((k - 1) * d for _, k, d in layers) == rf
    pools = [d for kind, _, d in layers if kind == "pool"]
    assert pools == [2 ** i for i in range(len(pools))]  # each pooling doubles the dilation after it


def test_output_keeps_the_size_and_sees_exactly_its_window():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    method = FeatureNetMethod(FeatureNetConfig(receptive_field=21, conv_filters=4, dense_filters=8, local_norm=False))
    net = method.build_network().eval()
    x = torch.rand(1, 3, 50, 47)
    with torch.no_grad():
        base = net(x)
        assert base.shape == (1, 3, 50, 47)
        y = x.clone()
        y[0, :, 25, 23] += 5.0
        changed = (net(y) - base).abs().sum(dim=(0, 1)) > 1e-6
    rows, cols = np.nonzero(changed.numpy())
    assert rows.min() == 25 - 10 and rows.max() == 25 + 10 and cols.min() == 23 - 10 and cols.max() == 23 + 10


def test_local_normalisation_ignores_brightness_and_contrast():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = FeatureNetMethod(FeatureNetConfig(receptive_field=21, conv_filters=4, dense_filters=8)).build_network()
    net.eval()
    x = torch.rand(1, 3, 80, 80, dtype=torch.float64)
    net = net.double()
    with torch.no_grad():  # away from the zero-padded border of the two 21 px box filters and the network's window
        assert torch.allclose(net(x)[..., 30:50, 30:50], net(3.0 * x + 7.0)[..., 30:50, 30:50], atol=1e-4)


def test_instances_of_perfect_maps_are_the_cells():
    lab = np.zeros((30, 50), np.int32)
    lab[5:20, 5:20], lab[5:20, 20:35] = 1, 2  # two touching squares
    method = FeatureNetMethod(FeatureNetConfig(min_size=10))
    classes, regression = method.targets(lab)
    assert regression is None
    logits = np.where(np.arange(3)[:, None, None] == classes[None], 10.0, 0.0)
    labels, p_interior = method.instances(logits)
    assert labels.max() == 2 and p_interior.shape == lab.shape
    assert (labels[lab == 1] == labels[10, 10]).all() and (labels[lab == 2] == labels[10, 30]).all()
