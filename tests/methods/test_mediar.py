"""MediarFormer pieces against exact answers: window blending, flip TTA, Cellpose masks, augmentations, inputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("cellpose")

import torch  # noqa: E402
from skimage.draw import disk  # noqa: E402

from cellbench.errors import DataError  # noqa: E402
from cellbench.methods.adapters.mediar.augment import AugmentConfig, augment, flow_targets  # noqa: E402
from cellbench.methods.adapters.mediar.inference import (  # noqa: E402
    gaussian_importance,
    masks_from_maps,
    predict_maps,
    sliding_window,
    window_starts,
)
from cellbench.methods.adapters.mediar.method import MediarConfig, MediarMethod, mediar_input  # noqa: E402
from cellbench.methods.adapters.mediar.model import build_mediarformer, load_mediar_state, read_state_dict  # noqa: E402


def test_windows_cover_the_image_and_blend_to_the_identity():
    assert window_starts(300, 128, 0.6) == [0, 51, 102, 153, 172]
    w = gaussian_importance(64)
    assert w.max() == 1.0 and w.min() > 0 and np.allclose(w, w.T)
    image = np.random.default_rng(0).random((3, 100, 150)).astype(np.float32)
    out = sliding_window(lambda x: x[:, :2] * 2.0, image, roi=64, overlap=0.6, batch=3)
    assert out.shape == (2, 100, 150)
    np.testing.assert_allclose(out, image[:2] * 2.0, rtol=1e-5, atol=1e-6)
    small = sliding_window(lambda x: x, image[:, :40, :50], roi=64, overlap=0.6)  # zero-padded to one window
    np.testing.assert_allclose(small, image[:, :40, :50], atol=1e-6)


def _central_differences(x: torch.Tensor) -> torch.Tensor:
    """[d/dy, d/dx, value] of channel 0: flipping the input flips these with the sign rules of flows."""
    v = x[:, :1]
    ky = torch.tensor([[0.0, -0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.0]]).view(1, 1, 3, 3)
    dy = torch.nn.functional.conv2d(v, ky, padding=1)
    dx = torch.nn.functional.conv2d(v, ky.transpose(2, 3), padding=1)
    return torch.cat([dy, dx, v], dim=1)


def test_flip_tta_undoes_the_flips_with_the_right_flow_signs():
    rng = np.random.default_rng(1)
    image = rng.random((3, 64, 64)).astype(np.float32)
    plain = predict_maps(_central_differences, image, roi=64, overlap=0.6, tta=False)
    tta = predict_maps(_central_differences, image, roi=64, overlap=0.6, tta=True)
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_masks_from_perfect_maps_are_the_cells():
    labels = np.zeros((80, 80), np.int32)
    for k, (r, c) in enumerate([(20, 20), (22, 50), (58, 35)], start=1):
        labels[disk((r, c), 9, shape=labels.shape)] = k
    maps = np.concatenate([5.0 * flow_targets(labels), np.where(labels > 0, 6.0, -6.0)[None]]).astype(np.float32)
    masks, prob = masks_from_maps(maps)
    assert prob.shape == labels.shape and prob.max() > 0.99
    assert len(np.unique(masks)) - 1 == 3
    for k in (1, 2, 3):
        found = np.bincount(masks[labels == k]).argmax()
        assert found > 0 and np.array_equal(masks == found, labels == k)
    empty, _ = masks_from_maps(np.concatenate([maps[:2], np.full((1, 80, 80), -6.0)]))
    assert not empty.any()


def test_augment_is_seeded_and_keeps_image_and_labels_aligned():
    labels = np.zeros((90, 110), np.int32)
    for k, (r, c) in enumerate([(20, 20), (45, 70), (70, 30)], start=1):
        labels[disk((r, c), 10, shape=labels.shape)] = k
    image = np.repeat((labels > 0).astype(np.float32)[None], 3, axis=0)
    geometric = AugmentConfig(diversify_cells=0.0, intensity_prob=0.0, zoom_prob=0.0)
    zoomed = AugmentConfig(diversify_cells=0.0, intensity_prob=0.0, zoom_prob=1.0, zoom_min=0.5, zoom_max=1.5)
    for seed in range(5):
        x, lab = augment(image, labels, crop=64, config=geometric, rng=np.random.default_rng(seed))
        assert x.shape == (3, 64, 64) and lab.shape == (64, 64)
        assert np.array_equal(x[0] > 0.5, lab > 0)  # flips, rotations and crops move both alike
        x, lab = augment(image, labels, crop=64, config=zoomed, rng=np.random.default_rng(seed))
        inter, union = np.sum((x[0] > 0.5) & (lab > 0)), np.sum((x[0] > 0.5) | (lab > 0))
        assert inter >= 0.85 * union  # area vs nearest resampling differ by at most a pixel at edges
    a = augment(image, labels, crop=64, config=AugmentConfig(), rng=np.random.default_rng(7))
    b = augment(image, labels, crop=64, config=AugmentConfig(), rng=np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="C x H x W"):
        augment(image[:, :50], labels, crop=64, config=AugmentConfig(), rng=np.random.default_rng(0))


def test_flow_targets_are_cellpose_flows_of_renumbered_labels():
    labels = np.zeros((40, 40), np.int32)
    labels[disk((20, 20), 8)] = 7
    flows = flow_targets(labels)
    assert flows.shape == (2, 40, 40) and flows.dtype == np.float32
    assert not flows[:, labels == 0].any() and np.abs(flows).max() <= 1.0 + 1e-6
    assert flows[0, 14, 20] > 0 > flows[0, 26, 20]  # above the centre the flow points down (+y), below up
    assert not flow_targets(np.zeros((8, 8), np.int32)).any()


def test_mediar_input_has_three_channels_in_unit_range():
    cfg = MediarConfig()
    grey = np.arange(100, dtype=np.uint16).reshape(10, 10)
    x = mediar_input(grey, cfg)
    assert x.shape == (3, 10, 10) and x.min() == 0.0 and x.max() == 1.0
    assert np.array_equal(x[0], x[2])
    assert mediar_input(np.dstack([grey, grey]), cfg)[2].max() == 0.0
    assert mediar_input(np.dstack([grey] * 4), cfg).shape == (3, 10, 10)
    with pytest.raises(DataError, match="1 to 4 channels"):
        mediar_input(np.dstack([grey] * 5), cfg)


def test_network_has_mediar_layout_and_loads_only_fitting_weights(tmp_path):
    net = build_mediarformer(encoder="mit_b0", decoder_channels=(32, 16, 16, 16, 16), decoder_pab_channels=16)
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    assert {k.split(".")[0] for k in net.state_dict()} == {"encoder", "decoder", "cellprob_head", "gradflow_head"}
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
        with pytest.raises(ValueError, match="multiples of 32"):
            net(torch.zeros(1, 3, 48, 64))
    torch.save(net.state_dict(), tmp_path / "w.pth")
    other = build_mediarformer(encoder="mit_b0", decoder_channels=(32, 16, 16, 16, 16), decoder_pab_channels=16)
    load_mediar_state(other, {f"module.{k}": v for k, v in read_state_dict(tmp_path / "w.pth").items()})
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    wider = build_mediarformer(encoder="mit_b0", decoder_channels=(64, 16, 16, 16, 16), decoder_pab_channels=16)
    with pytest.raises(DataError, match="shape differs"):
        load_mediar_state(wider, read_state_dict(tmp_path / "w.pth"), path=tmp_path / "w.pth")
    (tmp_path / "bad.pth").write_text("not torch")
    with pytest.raises(DataError, match="bad.pth"):
        read_state_dict(tmp_path / "bad.pth")


def test_config_refuses_what_mediar_cannot_run_and_prediction_needs_weights():
    with pytest.raises(ValueError, match="multiple of 32"):
        MediarConfig(crop=100)
    with pytest.raises(ValueError, match="encoder"):
        MediarConfig(encoder="resnet50")
    with pytest.raises(DataError, match="train or load"):
        MediarMethod().predict(np.zeros((32, 32)))


def test_untrained_mediar_predicts_zero_shot_with_its_pretrained_weights(tmp_path):
    """A zero-shot grid entry (the Glioma C6 paper's MediarFormer without fine-tuning) predicts with ``pretrained``."""
    settings = {"encoder": "mit_b0", "decoder_channels": (32, 16, 16, 16, 16), "decoder_pab_channels": 16,
                "roi": 64, "crop": 64, "tta": False}
    torch.manual_seed(0)
    net = build_mediarformer(encoder="mit_b0", decoder_channels=(32, 16, 16, 16, 16), decoder_pab_channels=16)
    torch.save(net.state_dict(), tmp_path / "phase2.pth")
    image = np.random.default_rng(0).random((64, 80)).astype(np.float32)
    zero_shot = MediarMethod(MediarConfig(pretrained=str(tmp_path / "phase2.pth"), **settings))
    loaded = MediarMethod(MediarConfig(**settings))
    loaded._net = loaded._new_net(read_state_dict(tmp_path / "phase2.pth")).eval()
    zero_shot.predict(image)  # an untrained method with pretrained weights predicts
    (labels_a, prob_a), (labels_b, prob_b) = zero_shot._labels(image), loaded._labels(image)
    assert prob_a.std() > 0 and np.array_equal(prob_a, prob_b) and np.array_equal(labels_a, labels_b)
    with pytest.raises(DataError, match="missing.pth"):
        MediarMethod(MediarConfig(pretrained=str(tmp_path / "missing.pth"), **settings)).predict(image)
