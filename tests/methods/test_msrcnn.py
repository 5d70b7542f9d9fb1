"""MS R-CNN: MaskIoU targets by hand, the head as published, rescoring = class score x predicted IoU, Mask R-CNN
files load."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from torchvision.models.detection.roi_heads import project_masks_on_boxes  # noqa: E402

from cellbench.errors import DataError  # noqa: E402
from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.maskiou_head import (  # noqa: E402
    MaskIoUHead,
    area_fractions,
    mask_iou_targets,
    mask_scores,
)
from cellbench.methods.adapters.detection.weights import load_pretrained  # noqa: E402

TINY = {"backbone": "resnet18", "head_width": 16, "patch_size": 64, "batch_size": 2,
        "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 16, "rpn_post_nms": 50, "detections_per_image": 20,
        "score_threshold": 0.0}


def method(name: str, **over):
    cls = get_method(name)
    return cls(config_from_dict(cls.Config, {**TINY, **over}))


def test_mask_iou_target_of_a_mask_cut_by_its_roi_by_hand():
    """A 20 x 20 instance (400 px); the RoI, 6 x 12 px inside it, holds 72 px of it (fraction 0.18); the predicted
    mask is the RoI's left half, 36 px of the instance: IoU = 36 / 400 = 0.09 (the instance's whole area counts,
    not the part in the RoI, which would give 0.5)."""
    gt = torch.zeros(1, 32, 32, dtype=torch.uint8)
    gt[0, 5:25, 5:25] = 1
    roi = torch.tensor([[8.0, 8.0, 14.0, 20.0]])
    fractions = area_fractions(gt, roi, torch.tensor([0]))
    assert fractions.tolist() == [pytest.approx(0.18)]
    target = project_masks_on_boxes(gt, roi, torch.tensor([0]), 28)  # the RoI lies inside the instance: all 1
    assert float(target.min()) == pytest.approx(1.0)
    probs = torch.full((1, 28, 28), 0.1)
    probs[0, :, :14] = 0.9
    assert mask_iou_targets(probs, target, fractions).tolist() == [pytest.approx(0.09)]
    assert mask_iou_targets(probs, target, fractions, threshold=0.95).tolist() == [0.0]  # nothing predicted
    # the RoI the instance's box, the prediction the projected instance: 1
    whole = torch.tensor([[5.0, 5.0, 25.0, 25.0]])
    exact = project_masks_on_boxes(gt, whole, torch.tensor([0]), 28)
    assert area_fractions(gt, whole, torch.tensor([0])).tolist() == [1.0]
    assert mask_iou_targets(exact, exact, torch.ones(1)).tolist() == [1.0]


def test_area_fractions_follow_the_matched_instance_and_clip_to_the_image():
    gt = torch.zeros(2, 16, 16, dtype=torch.uint8)
    gt[0, 0:4, 0:4] = 1  # 16 px
    gt[1, 8:16, 8:16] = 1  # 64 px
    boxes = torch.tensor([[0.0, 0.0, 2.0, 4.0], [12.0, 8.0, 40.0, 40.0], [8.9, 8.9, 9.2, 9.2]])
    # 8 of 16; the right half of instance 1 (box clipped to the image); a sub-pixel box covers one pixel (8, 8)
    assert area_fractions(gt, boxes, torch.tensor([0, 1, 1])).tolist() == [0.5, 0.5, 1 / 64]


def test_the_maskiou_head_is_four_convolutions_and_three_fully_connected_layers():
    head = MaskIoUHead(256, 3)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.in_channels for c in convs] == [257, 256, 256, 256] and [c.stride for c in convs][-1] == (2, 2)
    assert [(f.in_features, f.out_features) for f in fcs] == [(256 * 7 * 7, 1024), (1024, 1024), (1024, 3)]
    # the mask enters max-pooled: a mask whose 2 x 2 blocks have the same maximum gives the same IoU
    features = torch.randn(1, 256, 14, 14)
    sharp = torch.full((1, 28, 28), -9.0)
    sharp[0, ::2, ::2] = 9.0
    flat = torch.full((1, 28, 28), 9.0)
    assert torch.allclose(head(features, sharp), head(features, flat))


class ConstantIoU(torch.nn.Module):
    def __init__(self, value: float, classes: int) -> None:
        super().__init__()
        self.value, self.classes = value, classes

    def forward(self, features, mask_logits):
        return torch.full((len(features), self.classes), self.value)


def _heads_output(model, image: torch.Tensor):
    from cellbench.methods.adapters.detection.inference import set_input_size

    model.eval()
    set_input_size(model, *image.shape[-2:], 1.0)
    images, _ = model.transform([image])
    features = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, features)
    found, _ = model.roi_heads(features, proposals, images.image_sizes)
    return found[0]


def test_msrcnn_is_maskrcnn_whose_scores_are_multiplied_by_the_predicted_iou(blobs):
    """Same seed, same shared weights (the MaskIoU head is built last): the same boxes, masks and class scores as
    Mask R-CNN, and each score multiplied by the IoU predicted for its class, clipped to [0, 1]."""
    mask_rcnn, ms_rcnn = method("maskrcnn"), method("msrcnn")
    torch.manual_seed(0)
    plain = mask_rcnn._new_model(1)
    torch.manual_seed(0)
    scored = ms_rcnn._new_model(1)
    ours, theirs = scored.state_dict(), plain.state_dict()
    assert {k for k in ours if not k.startswith("roi_heads.mask_iou_head.")} == set(theirs)
    assert all(torch.equal(ours[k], v) for k, v in theirs.items())
    image = torch.from_numpy(mask_rcnn._input(blobs["test"][0].load_image()).transpose(2, 0, 1).copy())
    a, b = _heads_output(plain, image), _heads_output(scored, image)
    assert len(a["scores"]) > 0
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["masks"], b["masks"])
    assert torch.equal(a["scores"], b["box_scores"])
    assert torch.allclose(b["scores"], a["scores"] * b["mask_iou"].clamp(0, 1))
    scored.roi_heads.mask_iou_head = ConstantIoU(0.5, 2)
    c = _heads_output(scored, image)
    assert torch.allclose(c["scores"], a["scores"] * 0.5)
    assert mask_scores(torch.tensor([0.8]), torch.tensor([-0.2])).tolist() == [0.0]


def test_training_adds_the_maskiou_loss_and_it_reaches_the_mask_head(blobs):
    from cellbench.methods.adapters.detection.inference import set_input_size
    from cellbench.methods.adapters.detection.targets import batch_tensors, random_crop

    ms = method("msrcnn")
    torch.manual_seed(0)
    model = ms._new_model(1)
    model.train()
    set_input_size(model, 64, 64, 1.0)
    rng = np.random.default_rng(0)
    sample = blobs["train"][0]
    crops = [random_crop(ms._input(sample.load_image()), sample.instances, 64, rng) for _ in range(2)]
    losses = model(*batch_tensors(crops))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_mask_iou", "loss_objectness",
                           "loss_rpn_box_reg"}
    assert float(losses["loss_mask_iou"].detach()) > 0
    losses["loss_mask_iou"].backward()
    grads = [p.grad for p in model.roi_heads.mask_predictor.parameters()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_a_mask_rcnn_file_loads_into_msrcnn_but_its_maskiou_head(tmp_path):
    torch.manual_seed(1)
    plain = method("maskrcnn")._new_model(1)
    torch.save(plain.state_dict(), tmp_path / "mrcnn.pth")
    ms = method("msrcnn")
    torch.manual_seed(2)
    model = ms._new_model(1)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("roi_heads.mask_iou_head.")}
    record = load_pretrained(model, tmp_path / "mrcnn.pth", class_heads=ms.class_heads, new_heads=ms.new_heads)
    assert record["new_heads_initialised"] == len(before) and record["file_heads_left_out"] == 0
    state = model.state_dict()
    assert torch.equal(state["backbone.body.conv1.weight"], plain.state_dict()["backbone.body.conv1.weight"])
    assert all(torch.equal(state[k], v) for k, v in before.items())
    # the other way: a Mask R-CNN has no MaskIoU head to take the file's
    torch.save(model.state_dict(), tmp_path / "ms.pth")
    with pytest.raises(DataError, match="unexpected"):
        load_pretrained(method("maskrcnn")._new_model(1), tmp_path / "ms.pth")


def test_msrcnn_config_and_description():
    cls = get_method("msrcnn")
    assert cls.supports_classes and cls.resumable and "MS RCNN" in cls.description
    assert cls.presets["cpu"] == get_method("maskrcnn").presets["cpu"]
    with pytest.raises(ValueError, match="mask_iou_loss_weight"):
        cls.Config(mask_iou_loss_weight=-1.0)
