"""RetinaMask: anchors, matching, losses and the RoI level rule by hand, the layers as published, it learns."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.retinamask import RetinaMaskConfig  # noqa: E402
from cellbench.methods.adapters.detection.retinamask_head import (  # noqa: E402
    RetinaMask,
    mask_levels,
    mask_training_rois,
)
from cellbench.methods.adapters.detection.retinanet_head import (  # noqa: E402
    Detections,
    SelfAdjustingSmoothL1,
    dense_losses,
    detect_boxes,
    level_anchors,
    match_anchors,
)
from cellbench.methods.adapters.detection.weights import load_pretrained  # noqa: E402

TINY = {"backbone": "resnet18", "head_width": 16, "stacked_convs": 2, "pyramid_levels": [2, 3, 4, 5, 6],
        "anchor_sizes": [8, 16, 32, 64, 128], "mask_rois": 8, "patch_size": 64, "batch_size": 2}


def method(name: str = "retinamask", **over):
    cls = get_method(name)
    return cls(config_from_dict(cls.Config, {**TINY, **over} if name == "retinamask" else over))


def test_anchors_by_hand():
    """Three scales (2^0, 2^(1/3), 2^(2/3)) x three ratios (h / w = 0.5, 1, 2) per position, the area of each
    scale kept, centred on the level's pixel centres."""
    anchors = level_anchors(32, 8, 2, 3)
    assert anchors.shape == (2 * 3 * 9, 4)
    first = anchors[:9]
    w, h = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]
    sides = [32, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)]
    assert (w * h).tolist() == pytest.approx([s * s for s in sides] * 3, rel=1e-5)
    assert (h / w).tolist() == pytest.approx([0.5] * 3 + [1.0] * 3 + [2.0] * 3, rel=1e-5)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert centres[0].tolist() == [4.0, 4.0]
    assert centres[9].tolist() == pytest.approx([12.0, 4.0]) and centres[8].tolist() == pytest.approx([4.0, 4.0])
    assert centres[3 * 9].tolist() == pytest.approx([4.0, 12.0])  # next column: one stride; after 3: next row


def test_anchor_matching_by_hand():
    """Ground truth 0 = [0, 0, 10, 10]: anchor 0 is it (IoU 1: positive), anchor 1 covers its top 45 %
    (IoU 0.45: ignored), anchor 2 is far (background). Ground truth 1 = [100, 100, 110, 110]: its best anchor,
    3, has IoU 0.3 and is positive all the same (the best matching policy); anchor 4 (IoU 0.2) is background."""
    gt = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110]])
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 4.5], [50, 50, 60, 60], [100, 100, 110, 103],
                            [100, 100, 110, 102]])
    assert match_anchors(anchors, gt).tolist() == [0, -2, -1, 1, -1]
    assert match_anchors(anchors, gt[:0]).tolist() == [-1] * 5
    # IoU 0.45 is positive when the positive threshold is 0.4
    assert match_anchors(anchors, gt, positive=0.4, negative=0.3).tolist()[:2] == [0, 0]


def test_dense_losses_by_hand():
    """Anchors: one positive (IoU 90 / 110 with the ground truth, its centre 1 px right: dx = -0.1), one ignored,
    one background; all logits 0 (p = 0.5) and deltas 0.

    Focal loss, normalised by the one positive: 0.25 x 0.5^2 x ln 2 (positive) + 0.75 x 0.5^2 x ln 2
    (background) = 0.25 ln 2; the ignored anchor adds nothing. Smooth L1 with beta 0.11: 0.5 x 0.1^2 / 0.11."""
    anchors = torch.tensor([[1.0, 0, 11, 10], [0, 0, 10, 4.5], [50, 50, 60, 60]])
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    losses = dense_losses(torch.zeros(1, 3, 1), torch.zeros(1, 3, 4), anchors, [target],
                          SelfAdjustingSmoothL1(0.11))
    assert float(losses["loss_cls"]) == pytest.approx(0.25 * math.log(2), rel=1e-5)
    assert float(losses["loss_box"]) == pytest.approx(0.5 * 0.01 / 0.11, rel=1e-5)
    # two images, the second without cells: its anchors are all background, the norm is still one positive
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    both = dense_losses(torch.zeros(2, 3, 1), torch.zeros(2, 3, 4), anchors, [target, empty],
                        SelfAdjustingSmoothL1(0.11))
    assert float(both["loss_cls"]) == pytest.approx(0.25 * math.log(2) + 3 * 0.75 * 0.25 * math.log(2), rel=1e-5)


def test_self_adjusting_smooth_l1_by_hand():
    """Differences 0 and 0.2 in the first coordinate: mean 0.1, variance 0.02; running mean 0.9 x 0.11 + 0.1 x
    0.1 = 0.109, running variance 0.002, beta 0.107. The second coordinate (differences 0.5, 0.5) moves the mean
    to 0.149 and beta is clipped to 0.11."""
    loss = SelfAdjustingSmoothL1(0.11)
    assert loss.beta.tolist() == pytest.approx([0.11] * 4)
    pred = torch.tensor([[0.0, 0.5, 0, 0], [0.2, 0.5, 0, 0]])
    out = loss(pred, torch.zeros(2, 4))
    assert loss.running_mean[:2].tolist() == pytest.approx([0.109, 0.149], abs=1e-6)
    assert loss.beta[:2].tolist() == pytest.approx([0.107, 0.11], abs=1e-6)
    assert out[:, 0].tolist() == pytest.approx([0.0, 0.2 - 0.5 * 0.107], abs=1e-6)
    assert out[0, 1] == pytest.approx(0.5 - 0.055, abs=1e-6)
    loss.eval()  # prediction does not move the statistics
    loss(pred, torch.zeros(2, 4))
    assert loss.beta[0] == pytest.approx(0.107, abs=1e-6)
    fixed = SelfAdjustingSmoothL1(1 / 9, adjust=False)  # DeepCell's smooth L1, sigma 3
    assert fixed(pred, torch.zeros(2, 4))[1, 0] == pytest.approx(0.2 - 0.5 / 9, abs=1e-6)
    assert fixed.beta.tolist() == pytest.approx([1 / 9] * 4)


def test_mask_levels_by_hand():
    """ceil(4 + log2(side / 224)): 224 px reads P4, 225-448 P5, 112 P3, smaller the finest level read."""
    boxes = torch.tensor([[0.0, 0, 224, 224], [0, 0, 448, 448], [0, 0, 449, 449], [0, 0, 112, 56],
                          [0, 0, 10, 10], [0, 0, 5000, 5000]])
    assert mask_levels(boxes, (3, 4, 5, 6, 7)).tolist() == [4, 5, 6, 3, 3, 7]
    assert mask_levels(boxes, (2, 3, 4, 5, 6)).tolist() == [4, 5, 6, 3, 2, 6]


def test_mask_training_rois_take_positive_detections_then_ground_truths():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    found = Detections(torch.tensor([[20.0, 20, 30, 31], [50, 50, 60, 60], [0, 1, 10, 10]]),
                       torch.tensor([0.9, 0.8, 0.3]), torch.zeros(3, dtype=torch.long))
    boxes, matched = mask_training_rois(found, gt, iou=0.5, limit=10)
    assert boxes.tolist() == [[20.0, 20, 30, 31], [0, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]
    assert matched.tolist() == [1, 0, 0, 1]
    assert mask_training_rois(found, gt, iou=0.5, limit=1)[1].tolist() == [1]  # the best-scoring first
    none = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert mask_training_rois(none, gt, iou=0.5, limit=10)[1].tolist() == [0, 1]
    assert len(mask_training_rois(found, gt[:0], iou=0.5, limit=10)[0]) == 0


def test_detections_keep_the_best_of_overlapping_boxes():
    """Two anchors of one level on the same box (NMS keeps the better), one elsewhere below the threshold."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40]])
    logits = torch.tensor([[2.0], [1.0], [-5.0]])
    found = detect_boxes(logits, torch.zeros(3, 4), anchors, [3], (64, 64), score_threshold=0.05,
                         nms_threshold=0.5, pre_nms=1000, detections=100)
    assert found.boxes.tolist() == [[0.0, 0, 10, 10]] and found.labels.tolist() == [0]
    assert float(found.scores[0]) == pytest.approx(1 / (1 + math.exp(-2)))


def test_layers_as_published():
    from cellbench.methods.adapters.detection.backbones import build_backbone

    cfg = RetinaMaskConfig()  # the paper's: P3-P7, 256-channel towers of 4 convolutions, 9 anchors
    model = RetinaMask(build_backbone("resnet18", trainable_layers=5), 1, cfg)
    convs = [m for m in model.head.cls_tower if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(256, 256)] * 4
    assert model.head.cls_logits.out_channels == 9 and model.head.bbox_pred.out_channels == 36
    assert float(torch.sigmoid(model.head.cls_logits.bias.detach())[0]) == pytest.approx(0.01)
    assert float(model.head.cls_tower[0].weight.detach().std()) == pytest.approx(0.01, rel=0.05)
    mask_convs = [m for m in model.mask_head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in mask_convs] == [(256, 256)] * 4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.mask_head.modules())  # Mask R-CNN's, no norm
    assert model.mask_predictor.conv5_mask.stride == (2, 2) and model.mask_predictor.mask_fcn_logits.out_channels == 2
    assert model.p7.stride == (2, 2) and model.box_loss.adjust
    feats = model.pyramid(torch.zeros(1, 3, 256, 256))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {3: (32, 32), 4: (16, 16), 5: (8, 8), 6: (4, 4),
                                                                  7: (2, 2)}
    anchors, sizes = model.anchors(feats)
    assert sizes == [9 * n * n for n in (32, 16, 8, 4, 2)]
    assert float((anchors[:1, 2:] - anchors[:1, :2]).prod()) == pytest.approx(32 * 32)  # P3: 32 px


def test_training_losses_reach_their_layers(blobs, monkeypatch):
    from cellbench.methods.adapters.detection.inference import set_input_size
    from cellbench.methods.adapters.detection.targets import batch_tensors, random_crop

    rm = method()
    torch.manual_seed(0)
    model = rm._new_model(1)
    model.train()
    set_input_size(model, 64, 64, 1.0)
    sample = blobs["train"][0]
    crops = [random_crop(rm._input(sample.load_image()), sample.instances, 64, np.random.default_rng(k))
             for k in range(2)]
    losses = model(*batch_tensors(crops))
    assert set(losses) == {"loss_cls", "loss_box", "loss_mask"} and all(float(v.detach()) > 0 for v in losses.values())
    reached = {}
    for key, layer in (("loss_cls", model.head.cls_logits), ("loss_box", model.head.bbox_pred),
                       ("loss_mask", model.mask_predictor.mask_fcn_logits)):
        model.zero_grad()
        losses[key].backward(retain_graph=True)
        reached[key] = float(layer.weight.grad.abs().sum()) > 0
        assert float(model.backbone.fpn.layer_blocks[0][0].weight.grad.abs().sum()) > 0  # and the FPN
    assert reached == {"loss_cls": True, "loss_box": True, "loss_mask": True}
    assert model.box_loss.running_mean.tolist() != pytest.approx([0.11] * 4)  # the beta adjusts
    seen: list[float] = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm: seen.append(norm) or
                        real(params, norm))
    method(epochs=1, crops_per_epoch=2, max_grad_norm=10.0).train(blobs["train"], seed=0)
    assert seen == [10.0]


def test_a_mask_rcnn_file_gives_its_backbone_to_retinamask(tmp_path):
    torch.manual_seed(1)
    plain = method("maskrcnn", backbone="resnet18", head_width=16)._new_model(1)
    torch.save(plain.state_dict(), tmp_path / "mrcnn.pth")
    rm = method()
    torch.manual_seed(2)
    model = rm._new_model(1)
    heads = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("head.", "mask_"))}
    record = load_pretrained(model, tmp_path / "mrcnn.pth", class_heads=rm.class_heads, new_heads=rm.new_heads)
    assert record["new_heads_initialised"] >= len(heads) and record["file_heads_left_out"] > 0
    state = model.state_dict()
    for name in ("backbone.body.conv1.weight", "backbone.fpn.layer_blocks.0.0.weight"):
        assert torch.equal(state[name], plain.state_dict()[name])
    assert all(torch.equal(state[k], v) for k, v in heads.items())


def test_retinamask_config_and_description():
    cls = get_method("retinamask")
    assert cls.supports_classes and cls.resumable and "RetinaMask" in cls.description
    config = cls.Config()
    assert (config.pyramid_levels, config.anchor_sizes, config.positive_iou, config.negative_iou,
            config.focal_alpha, config.focal_gamma, config.smooth_l1_beta, config.mask_rois, config.nms_threshold,
            config.detections_per_image) == ((3, 4, 5, 6, 7), (32, 64, 128, 256, 512), 0.5, 0.4, 0.25, 2.0, 0.11,
                                             100, 0.5, 100)
    with pytest.raises(ValueError, match="pyramid_levels"):
        cls.Config(pyramid_levels=(3, 5))
    with pytest.raises(ValueError, match="anchor_sizes"):
        cls.Config(anchor_sizes=(32, 64))
    with pytest.raises(ValueError, match="box_loss"):
        config_from_dict(cls.Config, {"box_loss": "giou"})
    with pytest.raises(ValueError, match="negative_iou"):
        cls.Config(positive_iou=0.4, negative_iou=0.5)


def test_a_few_steps_lower_the_loss(blobs):
    """On one fixed pair of crops, twenty AdamW steps lower every loss (a second on a CPU)."""
    from cellbench.methods.adapters.detection.inference import set_input_size
    from cellbench.methods.adapters.detection.targets import batch_tensors, random_crop

    rm = method()
    torch.manual_seed(0)
    model = rm._new_model(1)
    model.train()
    set_input_size(model, 64, 64, 1.0)
    sample = blobs["train"][0]
    inputs = batch_tensors([random_crop(rm._input(sample.load_image()), sample.instances, 64,
                                        np.random.default_rng(k), augment=False) for k in range(2)])
    opt = torch.optim.AdamW(model.parameters(), lr=0.001)
    first = last = None
    for _ in range(20):
        losses = model(*inputs)
        first = first or {k: float(v.detach()) for k, v in losses.items()}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    last = {k: float(v.detach()) for k, v in model(*inputs).items()}
    assert all(last[k] < first[k] for k in first), (first, last)


@pytest.mark.slow
def test_retinamask_learns_the_blobs(blobs):
    """A small RetinaMask overfits two blob images in about a CPU minute: most cells found at IoU 0.5."""
    from cellbench.methods.tiling import TileConfig, predict_image
    from cellbench.methods.validation import pooled_f1

    rm = method(head_width=64, stacked_convs=4, mask_rois=16, epochs=15, crops_per_epoch=16, optimizer="adamw",
                lr=0.001, warmup_iters=10, val_every=0, score_threshold=0.3, threads=1)
    rm.train(blobs["train"], seed=0)
    sample = blobs["train"][0]
    found = predict_image(rm, sample.load_image(), TileConfig(tile=96, overlap=0))
    assert pooled_f1([(sample.instances, found)]) >= 0.8
