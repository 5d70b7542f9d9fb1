"""SOLOv2: Matrix NMS and the grid targets by hand, the head as published, Mask R-CNN files load, it learns."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.matrix_nms import matrix_nms  # noqa: E402
from cellbench.methods.adapters.detection.solov2 import SOLOv2Config  # noqa: E402
from cellbench.methods.adapters.detection.solov2_head import (  # noqa: E402
    SOLOv2Head,
    dice_loss,
    grid_shape,
    grid_targets,
)
from cellbench.methods.adapters.detection.weights import load_pretrained  # noqa: E402

TINY = {"backbone": "resnet18", "head_width": 16, "mask_width": 16, "kernel_channels": 16,
        "num_grids": [12, 10, 8, 6, 4], "patch_size": 64, "batch_size": 2}


def method(name: str = "solov2", **over):
    cls = get_method(name)
    return cls(config_from_dict(cls.Config, {**TINY, **over} if name == "solov2" else over))


def row_masks(*spans: tuple[int, int], width: int = 10) -> torch.Tensor:
    """One 1 x ``width`` mask per (start, stop) span of columns."""
    masks = torch.zeros(len(spans), 1, width, dtype=torch.bool)
    for k, (a, b) in enumerate(spans):
        masks[k, 0, a:b] = True
    return masks


def test_matrix_nms_by_hand():
    """A: 4 px, score 0.9; B: 2 of A's pixels and 2 more (IoU 2 / 6), 0.8; C: 3 of B's pixels and 1 more,
    0.6, IoU 0 with A and 3 / 5 with B; D: A's pixels in another class, 0.7.

    B decays by A: exp(-2 (1/3)^2) = 0.8007 (linear: 1 - 1/3). C decays by B, compensated by B's own overlap
    with A: exp(-2 (3/5)^2) / exp(-2 (1/3)^2) = 0.6065 (linear: (1 - 3/5) / (1 - 1/3) = 0.6); by A not at all.
    D, of another class, keeps its score."""
    masks = row_masks((0, 4), (2, 6), (3, 7), (0, 4))
    labels = torch.tensor([0, 0, 0, 1])
    scores = torch.tensor([0.9, 0.8, 0.6, 0.7])
    new, kept = matrix_nms(masks, labels, scores)
    b = 0.8 * math.exp(-2 / 9)
    c = 0.6 * math.exp(-2 * 0.36) / math.exp(-2 / 9)
    assert kept.tolist() == [0, 3, 1, 2]
    assert new.tolist() == pytest.approx([0.9, 0.7, b, c], abs=1e-6)
    new, kept = matrix_nms(masks, labels, scores, kernel="linear")
    assert new.tolist() == pytest.approx([0.9, 0.7, 0.8 * 2 / 3, 0.6 * 0.4 / (2 / 3)], abs=1e-6)
    # sigma scales the exponent; the update threshold drops C; keep and pre cut the ranking
    new, kept = matrix_nms(masks, labels, scores, sigma=4.0, update_threshold=0.4)
    assert kept.tolist() == [0, 3, 1] and new[2] == pytest.approx(0.8 * math.exp(-4 / 9), abs=1e-6)
    assert matrix_nms(masks, labels, scores, keep=2)[1].tolist() == [0, 3]
    assert matrix_nms(masks, labels, scores, pre=2)[1].tolist() == [0, 1]  # the two best scores take part
    assert matrix_nms(masks[:0], labels[:0], scores[:0])[1].tolist() == []
    with pytest.raises(ValueError, match="kernel"):
        matrix_nms(masks, labels, scores, kernel="box")


def test_grid_targets_by_hand():
    """A 64 px input whose first level has 8 cells of 8 px. Instance 0: rows 20-35, columns 4-19 (16 x 16, centre
    of mass (28, 12): cell (3, 1)); with pos_scale 1 its region spans cells 2-4 x 0-2, within one cell of the
    centre's; with 0.2 (half box x 0.2 = 1.6 px) only the centre's cell. Instance 1 (4 x 4 px, centre (45, 45):
    cell (5, 5)) claims cells of the level in which sqrt(16) = 4 lies; instance 2, 40 x 40 px, only the
    coarse level."""
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[0, 20:36, 4:20] = True
    masks[1, 43:47, 43:47] = True
    masks[2, 10:50, 10:50] = True
    boxes = torch.tensor([[4.0, 20.0, 20.0, 36.0], [43.0, 43.0, 47.0, 47.0], [10.0, 10.0, 50.0, 50.0]])
    labels = torch.tensor([0, 1, 0])
    s = SOLOv2Config(num_grids=(8, 8, 4, 4, 2), pos_scale=1.0,
                     scale_ranges=((1, 20), (1, 8), (30, 50), (100, 200), (100, 200)))
    levels = grid_targets(masks, boxes, labels, (64, 64), s, grid_size=64)
    assert [tuple(t.owner.shape) for t in levels] == [(8, 8), (8, 8), (4, 4), (4, 4), (2, 2)]
    first = levels[0].owner
    expected = torch.full((8, 8), -1)
    expected[2:5, 0:3] = 0
    expected[5, 5] = 1  # 45 +- 2 px stays in its cell
    assert torch.equal(first, expected)
    assert torch.equal(levels[0].labels, torch.where(expected == 1, 1, torch.where(expected == 0, 0, -1)))
    assert levels[1].owner[5, 5] == 1 and int((levels[1].owner >= 0).sum()) == 1  # instance 0 is too big there
    # instance 2, centre (30, 30), cells of 16 px: cell (1, 1), region 30 +- 20 px -> cells 0-2 (3 is beyond)
    coarse = torch.full((4, 4), -1)
    coarse[0:3, 0:3] = 2
    assert torch.equal(levels[2].owner, coarse)
    assert all(int((t.owner >= 0).sum()) == 0 for t in levels[3:])
    # pos_scale 0.2: only the cell of the centre of mass
    narrow = grid_targets(masks, boxes, labels, (64, 64), dataclasses.replace(s, pos_scale=0.2), grid_size=64)
    assert torch.nonzero(narrow[0].owner == 0).tolist() == [[3, 1]]
    # a cell two instances claim goes to the later one
    twice = grid_targets(masks[[0, 0]], boxes[[0, 0]], torch.tensor([0, 1]), (64, 64), s, grid_size=64)
    assert set(twice[0].owner.unique().tolist()) == {-1, 1} and int((twice[0].labels == 1).sum()) == 9


def test_grids_keep_their_pixel_size_on_other_inputs():
    assert grid_shape(512, 512, 40, 512) == (40, 40)  # a crop's size: the published grid
    assert grid_shape(1024, 256, 40, 512) == (80, 20)
    assert grid_shape(10, 10, 12, 512) == (1, 1)


def test_head_layers_as_published():
    head = SOLOv2Head(256, 1, 512, SOLOv2Config())  # MMDetection's solov2_r50_fpn
    convs = [m for m in head.kernel_convs.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(258, 512)] + [(512, 512)] * 3
    assert head.conv_kernel.out_channels == 256 and head.conv_cls.out_channels == 1
    assert float(torch.sigmoid(head.conv_cls.bias.detach())[0]) == pytest.approx(0.01)
    assert all(isinstance(m[1], torch.nn.GroupNorm) and m[1].num_groups == 32 for m in head.cls_convs)
    # the mask feature: P2 one convolution; P3-P5 one convolution + 2x upsampling per octave, P5 with coordinates
    levels = head.mask_features.levels
    assert [sum(isinstance(m, torch.nn.Upsample) for m in lv.modules()) for lv in levels] == [0, 1, 2, 3]
    assert levels[3][0][0].in_channels == 258 and head.mask_features.out[0].out_channels == 256
    feats = [torch.randn(1, 256, 128 // s, 128 // s) for s in (4, 8, 16, 32, 64)]
    kernels, logits, mask_feats = head(feats, (128, 128))
    assert [tuple(k.shape[-2:]) for k in kernels] == [(n, n) for n in (10, 9, 6, 4, 3)]  # 40 ... 12 per 512 px
    assert tuple(mask_feats.shape) == (1, 256, 32, 32) and logits[0].shape[1] == 1


def test_dice_loss_by_hand():
    logits = torch.tensor([[20.0, 20.0, -20.0, -20.0]])  # p = 1, 1, 0, 0
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert dice_loss(logits, target, eps=0.0).tolist() == pytest.approx([1 - 2 * 1 / (2 + 1)], abs=1e-6)


def test_training_sums_focal_and_dice_and_clips_the_gradients(blobs, monkeypatch):
    from cellbench.methods.adapters.detection.inference import set_input_size
    from cellbench.methods.adapters.detection.targets import batch_tensors, random_crop

    solo = method()
    torch.manual_seed(0)
    model = solo._new_model(1)
    model.train()
    set_input_size(model, 64, 64, 1.0)
    sample = blobs["train"][0]
    crops = [random_crop(solo._input(sample.load_image()), sample.instances, 64, np.random.default_rng(k))
             for k in range(2)]
    losses = model(*batch_tensors(crops))
    assert set(losses) == {"loss_cls", "loss_mask"} and all(float(v.detach()) > 0 for v in losses.values())
    losses["loss_mask"].backward()
    assert float(model.head.conv_kernel.weight.grad.abs().sum()) > 0  # the Dice loss reaches the kernels
    assert float(model.head.mask_features.out[0].weight.grad.abs().sum()) > 0  # and the mask features
    seen: list[float] = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm: seen.append(norm) or
                        real(params, norm))
    solo = method(epochs=1, crops_per_epoch=2)
    solo.train(blobs["train"], seed=0)
    assert seen == [35.0]  # MMDetection's grad_clip


def test_a_mask_rcnn_file_gives_its_backbone_to_solov2(tmp_path):
    torch.manual_seed(1)
    plain = method("maskrcnn", backbone="resnet18", head_width=16)._new_model(1)
    torch.save(plain.state_dict(), tmp_path / "mrcnn.pth")
    solo = method()
    torch.manual_seed(2)
    model = solo._new_model(1)
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    record = load_pretrained(model, tmp_path / "mrcnn.pth", class_heads=solo.class_heads, new_heads=solo.new_heads)
    assert record["new_heads_initialised"] == len(head) and record["file_heads_left_out"] > 0
    state = model.state_dict()
    for name in ("backbone.body.conv1.weight", "backbone.fpn.layer_blocks.0.0.weight"):
        assert torch.equal(state[name], plain.state_dict()[name])
    assert all(torch.equal(state[k], v) for k, v in head.items())


def test_solov2_config_tiling_and_description():
    cls = get_method("solov2")
    assert cls.supports_classes and cls.resumable and "SOLOv2" in cls.description
    assert cls.tiling_defaults() == {"tile": 512, "overlap": 128}
    config = cls.Config()
    assert (config.num_grids, config.score_threshold, config.update_threshold, config.nms_sigma,
            config.mask_loss_weight) == ((40, 36, 24, 16, 12), 0.1, 0.05, 2.0, 3.0)
    with pytest.raises(ValueError, match="num_grids"):
        cls.Config(num_grids=(40, 36))
    with pytest.raises(ValueError, match="nms_kernel"):
        config_from_dict(cls.Config, {"nms_kernel": "box"})


@pytest.mark.slow
def test_solov2_learns_the_blobs(blobs):
    """A small SOLOv2 overfits two blob images in about a CPU minute: most cells found at IoU 0.5 in 48 px tiles.

    At scale 2: a mask must cover more pixels of the stride-4 mask feature than its level's stride (8, as
    MMDetection), 128 network pixels, which the smaller blobs (77 px) pass only at scale 2."""
    from cellbench.methods.tiling import TileConfig, predict_image
    from cellbench.methods.validation import pooled_f1

    solo = method(head_width=64, mask_width=32, kernel_channels=32, patch_size=48, scale=2.0,
                  num_grids=[24, 20, 12, 8, 6], epochs=15, crops_per_epoch=16, optimizer="adamw", lr=0.001,
                  warmup_iters=10, val_every=0, update_threshold=0.3, threads=1)
    solo.train(blobs["train"], seed=0)
    sample = blobs["train"][0]
    found = predict_image(solo, sample.load_image(), TileConfig(tile=48, overlap=16))
    assert pooled_f1([(sample.instances, found)]) >= 0.8
