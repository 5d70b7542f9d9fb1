"""CenterMask: FCOS targets and detections, the adaptive level rule, SAG-Mask targets by hand; the heads as
published; every loss reaches its layers; Mask R-CNN files load; it learns."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.centermask import CenterMaskConfig  # noqa: E402
from cellbench.methods.adapters.detection.fcos_head import (  # noqa: E402
    LEVEL_STRIDES,
    FCOSHead,
    centerness,
    fcos_detections,
    fcos_targets,
    level_points,
)
from cellbench.methods.adapters.detection.sag_mask_head import (  # noqa: E402
    SAGMaskHead,
    SpatialAttention,
    assign_levels,
    mask_loss,
    mask_targets,
    pool_features,
)
from cellbench.methods.adapters.detection.weights import load_pretrained  # noqa: E402

TINY = {"backbone": "resnet18", "head_width": 16, "mask_width": 16, "patch_size": 64, "batch_size": 2}


def method(name: str = "centermask2", **over):
    cls = get_method(name)
    return cls(config_from_dict(cls.Config, {**TINY, **over} if name == "centermask2" else over))


def test_fcos_targets_by_hand():
    """A 128 px input: P3 16 x 16 locations 8 px apart (4, 12, ...), P4 8 x 8 (8, 24, ...), P5-P7.

    A (0-24 px square): within 1.5 x 8 px of its centre 12 on both axes, the P3 locations 4, 12, 20 (3 x 3);
    their largest distance (20) is within P3's 0-64. B (0-120 px): at P3 only location 60 has every distance
    <= 64; at P4 (reach 24 px: 36-84) 40, 56, 72, largest distances 64-80, all within 64-128. C (48-72 px)
    claims P3's 52, 60, 68: (60, 60) is B's too, and goes to C, the smaller box."""
    boxes = torch.tensor([[0.0, 0, 24, 24], [0, 0, 120, 120], [48, 48, 72, 72]])
    labels = torch.tensor([0, 1, 0])
    points, strides, ranges = level_points([torch.zeros(1, 1, 128 // s, 128 // s) for s in LEVEL_STRIDES])
    assert len(points) == 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1
    target, ltrb = fcos_targets(points, strides, ranges, boxes, labels, center_radius=1.5)
    found = {(int(strides[i]), int(points[i, 0]), int(points[i, 1])): int(target[i])
             for i in torch.nonzero(target >= 0).flatten()}
    grid = [(x, y) for x in range(3) for y in range(3)]
    expected = {(8, 4 + 8 * a, 4 + 8 * b): 0 for a, b in grid}  # A
    expected |= {(16, 40 + 16 * a, 40 + 16 * b): 1 for a, b in grid}  # B at P4
    expected |= {(8, 52 + 8 * a, 52 + 8 * b): 0 for a, b in grid}  # C, (60, 60) included
    assert found == expected
    at = {(int(strides[i]), int(points[i, 0]), int(points[i, 1])): i for i in range(len(points))}
    assert ltrb[at[8, 60, 60]].tolist() == [12, 12, 12, 12]  # C's, not B's
    assert ltrb[at[16, 40, 72]].tolist() == [40, 72, 80, 48]
    # a radius of half a stride: only A's centre location; no boxes: all background
    narrow, _ = fcos_targets(points, strides, ranges, boxes[:1], labels[:1], center_radius=0.5)
    assert torch.nonzero(narrow >= 0).flatten().tolist() == [at[8, 12, 12]]
    assert int((fcos_targets(points, strides, ranges, boxes[:0], labels[:0], center_radius=1.5)[0] >= 0).sum()) == 0


def test_centerness_by_hand():
    assert centerness(torch.tensor([[5.0, 5, 5, 5], [2, 4, 6, 4], [0, 1, 3, 1]])).tolist() == \
        pytest.approx([1.0, math.sqrt(1 / 3), 0.0])


def test_fcos_detections_by_hand():
    """64 px input, one class. P3 location (12, 12): probability 0.8, centerness 0.5, distances 4, 6, 8, 10 ->
    box (8, 6, 20, 22), score sqrt(0.4). Location (20, 12): 0.6, the same box: NMS drops it. P4 location (8, 8):
    0.3, a box (-12, -12, 12, 12) clipped to the image."""
    logits = [torch.full((1, 1, 64 // s, 64 // s), -10.0) for s in LEVEL_STRIDES]
    boxes = [torch.zeros(1, 4, 64 // s, 64 // s) for s in LEVEL_STRIDES]
    ctrs = [torch.zeros(1, 1, 64 // s, 64 // s) for s in LEVEL_STRIDES]
    for level, (row, col), p, ltrb in ((0, (1, 1), 0.8, (4, 6, 8, 10)), (0, (1, 2), 0.6, (12, 6, 0, 10)),
                                       (1, (0, 0), 0.3, (20, 20, 4, 4))):
        logits[level][0, 0, row, col] = math.log(p / (1 - p))
        boxes[level][0, :, row, col] = torch.tensor(ltrb, dtype=torch.float32)
    (found,) = fcos_detections(logits, boxes, ctrs, [(64, 64)], score_threshold=0.05, pre_nms=1000,
                               nms_threshold=0.6, keep=100)
    assert found.boxes.tolist() == [[8, 6, 20, 22], [0, 0, 12, 12]]
    assert found.scores.tolist() == pytest.approx([math.sqrt(0.4), math.sqrt(0.15)])
    assert found.labels.tolist() == [0, 0]
    (best,) = fcos_detections(logits, boxes, ctrs, [(64, 64)], score_threshold=0.05, pre_nms=1000,
                              nms_threshold=0.6, keep=1)
    assert len(best.boxes) == 1
    (few,) = fcos_detections(logits, boxes, ctrs, [(64, 64)], score_threshold=0.5, pre_nms=1000,
                             nms_threshold=1.0, keep=100)  # the threshold is on the class probability
    assert few.scores.tolist() == pytest.approx([math.sqrt(0.4), math.sqrt(0.3)])


def test_adaptive_level_assignment_and_pooling():
    """Eq. 1 of CenterMask: ceil(5 - log2(input area / box area)) in P3-P5; the pooled features come from it."""
    boxes = torch.tensor([[0.0, 0, 128, 128], [0, 0, 64, 128], [0, 0, 64, 64], [0, 0, 24, 24], [0, 0, 100, 100]])
    assert assign_levels(boxes, 128 * 128).tolist() == [5, 4, 3, 3, 5]  # 100^2: ceil(5 - log2 1.64) = ceil(4.29)
    assert assign_levels(boxes, 1024 * 1024).tolist() == [3, 3, 3, 3, 3]  # small on a large input
    assert assign_levels(boxes, 128 * 128, levels=(2, 5)).tolist() == [5, 4, 3, 2, 5]
    feats = {k: torch.full((1, 2, 128 // 2**k, 128 // 2**k), float(k)) for k in (2, 3, 4, 5)}
    pooled = pool_features(feats, [boxes[:4]], [128 * 128], levels=(3, 5))
    assert tuple(pooled.shape) == (4, 2, 14, 14)
    assert [float(p.mean()) for p in pooled] == pytest.approx([5, 4, 3, 3])


def test_mask_targets_by_hand():
    """One instance, rows 8-15 and columns 8-23 (box 8, 8, 24, 16). Its own box: IoU 1, all ones; a box twice as
    tall: IoU 0.5, a positive whose top half (14 of 28 rows) is the instance; a far box: negative."""
    masks = torch.zeros(1, 32, 32, dtype=torch.uint8)
    masks[0, 8:16, 8:24] = 1
    gt = torch.tensor([[8.0, 8, 24, 16]])
    proposals = torch.tensor([[8.0, 8, 24, 16], [8, 8, 24, 24], [28, 28, 32, 32]])
    positive, labels, target = mask_targets(proposals, gt, masks, torch.tensor([0]))
    assert positive.tolist() == [0, 1] and labels.tolist() == [0, 0] and tuple(target.shape) == (2, 28, 28)
    assert bool(target[0].all())
    assert bool(target[1, :14].all()) and not bool(target[1, 14:].any())
    logits = torch.zeros(2, 3, 28, 28)
    logits[:, 0] = 50 * (2 * target - 1)  # class 0's channel right, the others wrong
    assert float(mask_loss(logits, labels, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(mask_loss(logits, torch.tensor([1, 1]), target)) == pytest.approx(math.log(2), abs=1e-6)


def test_spatial_attention_by_hand():
    sam = SpatialAttention()
    with torch.no_grad():
        sam.conv.weight.zero_()
        sam.conv.bias.zero_()
        sam.conv.weight[0, 0, 1, 1] = 1.0  # the channel mean only
    x = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    assert torch.allclose(sam(x), x * torch.sigmoid(torch.tensor(2.0)))
    with torch.no_grad():
        sam.conv.weight[0, 0, 1, 1] = 0.0
        sam.conv.weight[0, 1, 1, 1] = 1.0  # the channel max only
    assert torch.allclose(sam(x), x * torch.sigmoid(torch.tensor(3.0)))


def test_heads_as_published():
    cfg = CenterMaskConfig()
    fcos = FCOSHead(256, 1, cfg)
    for tower in (fcos.cls_tower, fcos.box_tower):
        convs = [m for m in tower if isinstance(m, torch.nn.Conv2d)]
        norms = [m for m in tower if isinstance(m, torch.nn.GroupNorm)]
        assert [(c.in_channels, c.out_channels) for c in convs] == [(256, 256)] * 4
        assert all(n.num_groups == 32 for n in norms) and len(norms) == 4
    assert (fcos.cls_logits.out_channels, fcos.box_pred.out_channels, fcos.ctr_pred.out_channels) == (1, 4, 1)
    assert float(torch.sigmoid(fcos.cls_logits.bias.detach())[0]) == pytest.approx(0.01)
    assert fcos.p6.stride == (2, 2) and fcos.p7.stride == (2, 2) and fcos.scales.shape == (5,)
    feats = [torch.randn(1, 256, 128 // s, 128 // s) for s in (8, 16, 32)]
    logits, boxes, ctrs = fcos(fcos.pyramid(*feats))
    assert [tuple(x.shape[-2:]) for x in logits] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert boxes[0].shape[1] == 4 and bool((boxes[0] >= 0).all()) and ctrs[0].shape[1] == 1
    mask = SAGMaskHead(256, 2)
    convs = [m for m in mask.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(256, 256, (3, 3))] * 4
    assert (mask.attention.conv.in_channels, mask.attention.conv.out_channels) == (2, 1)
    assert mask.deconv.kernel_size == (2, 2) and mask.deconv.stride == (2, 2)
    assert mask.predictor.kernel_size == (1, 1) and mask.predictor.out_channels == 2
    assert tuple(mask(torch.randn(3, 256, 14, 14)).shape) == (3, 2, 28, 28)


def test_every_loss_reaches_its_layers(blobs):
    from cellbench.methods.adapters.detection.inference import set_input_size
    from cellbench.methods.adapters.detection.targets import batch_tensors, random_crop

    cm = method()
    torch.manual_seed(0)
    model = cm._new_model(1)
    model.train()
    set_input_size(model, 64, 64, 1.0)
    sample = blobs["train"][0]
    crops = [random_crop(cm._input(sample.load_image()), sample.instances, 64, np.random.default_rng(k))
             for k in range(2)]
    losses = model(*batch_tensors(crops))
    assert set(losses) == {"loss_cls", "loss_box", "loss_ctr", "loss_mask"}
    assert all(float(v.detach()) > 0 for v in losses.values())
    reach = {"loss_cls": model.fcos.cls_logits.weight, "loss_box": model.fcos.box_pred.weight,
             "loss_ctr": model.fcos.ctr_pred.weight, "loss_mask": model.sag_mask.attention.conv.weight}
    for name, param in reach.items():
        (grad,) = torch.autograd.grad(losses[name], [param], retain_graph=True)
        assert float(grad.abs().sum()) > 0, name
    backbone = model.backbone.fpn.layer_blocks[1][0].weight  # P3 of the FPN: both heads read it
    for name in ("loss_cls", "loss_mask"):
        (grad,) = torch.autograd.grad(losses[name], [backbone], retain_graph=True)
        assert float(grad.abs().sum()) > 0, name


def test_a_mask_rcnn_file_gives_its_backbone_to_centermask(tmp_path):
    torch.manual_seed(1)
    plain = method("maskrcnn", backbone="resnet18", head_width=16)._new_model(1)
    torch.save(plain.state_dict(), tmp_path / "mrcnn.pth")
    cm = method()
    torch.manual_seed(2)
    model = cm._new_model(1)
    heads = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("fcos.", "sag_mask."))}
    record = load_pretrained(model, tmp_path / "mrcnn.pth", class_heads=cm.class_heads, new_heads=cm.new_heads)
    assert record["new_heads_initialised"] == len(heads) and record["file_heads_left_out"] > 0
    state = model.state_dict()
    for name in ("backbone.body.conv1.weight", "backbone.fpn.layer_blocks.0.0.weight"):
        assert torch.equal(state[name], plain.state_dict()[name])
    assert all(torch.equal(state[k], v) for k, v in heads.items())


def test_centermask_config_tiling_and_description():
    cls = get_method("centermask2")
    assert cls.supports_classes and cls.resumable and "CenterMask" in cls.description
    assert cls.tiling_defaults() == {"tile": 512, "overlap": 128}
    config = cls.Config()
    assert (config.backbone, config.center_radius, config.score_threshold, config.nms_threshold,
            config.detections_per_image, config.mask_levels) == ("vovnet39", 1.5, 0.05, 0.6, 100, (3, 5))
    assert config_from_dict(cls.Config, {"mask_levels": [2, 5]}).mask_levels == (2, 5)
    with pytest.raises(ValueError, match="mask_levels"):
        cls.Config(mask_levels=(1, 5))
    with pytest.raises(ValueError, match="center_radius"):
        cls.Config(center_radius=0.0)
    assert set(cls.presets["cpu"]) <= {f for f in cls.Config.__dataclass_fields__}


@pytest.mark.slow
def test_centermask_learns_the_blobs(blobs):
    """A small CenterMask overfits two blob images in under a CPU minute: most cells found at IoU 0.5 (scores
    from 0.45: the half-trained detector's low-scored boxes are duplicates)."""
    from cellbench.methods.tiling import TileConfig, predict_image
    from cellbench.methods.validation import pooled_f1

    cm = method(head_width=32, mask_width=32, patch_size=64, epochs=15, crops_per_epoch=16, optimizer="adamw",
                lr=0.001, warmup_iters=10, val_every=0, output_threshold=0.45, mask_batch_size=16, threads=1)
    cm.train(blobs["train"], seed=0)
    sample = blobs["train"][0]
    found = predict_image(cm, sample.load_image(), TileConfig(tile=64, overlap=16))
    assert pooled_f1([(sample.instances, found)]) >= 0.8
