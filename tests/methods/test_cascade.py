"""Cascade Mask R-CNN: three stages at IoU 0.5 / 0.6 / 0.7 with their own box coders, each on the boxes the one
before refined, the scores averaged over the stages, Mask R-CNN files give the backbone and RPN."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.cascade_heads import STAGE_BOX_WEIGHTS, refine_boxes, stage_scores  # noqa: E402
from cellbench.methods.adapters.detection.inference import set_input_size  # noqa: E402
from cellbench.methods.adapters.detection.targets import batch_tensors, random_crop  # noqa: E402
from cellbench.methods.adapters.detection.weights import load_pretrained  # noqa: E402

# every proposal kept to the end (no score threshold, no NMS) so the stages' scores can be compared one by one
TINY = {"backbone": "resnet18", "head_width": 16, "patch_size": 64, "batch_size": 2,
        "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 64, "rpn_post_nms": 50, "detections_per_image": 200,
        "score_threshold": 0.0, "nms_threshold": 1.0}


def cascade(**over):
    cls = get_method("cascade")
    return cls(config_from_dict(cls.Config, {**TINY, **over}))


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return cascade()._new_model(1)


class Recorder:
    """Wraps the heads' box RoI pooling and predictors to record each stage's input boxes and outputs."""

    def __init__(self, heads) -> None:
        self.boxes: list[list[torch.Tensor]] = []
        self.outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        pool = heads.box_roi_pool
        self.handles = [pool.register_forward_pre_hook(
            lambda mod, args: self.boxes.append([b.detach().clone() for b in args[1]]))]
        for predictor in heads.box_predictors:
            self.handles.append(predictor.register_forward_hook(
                lambda mod, args, out: self.outputs.append(tuple(o.detach().clone() for o in out))))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _features(model, image: torch.Tensor):
    set_input_size(model, *image.shape[-2:], 1.0)
    images, _ = model.transform([image])
    features = model.backbone(images.tensors)
    return images, features


def test_three_stages_at_rising_iou_with_their_own_coders_and_weights(network):
    heads = network.roi_heads
    assert heads.num_stages == 3
    assert [(m.high_threshold, m.low_threshold) for m in heads.matchers] == [(0.5, 0.5), (0.6, 0.6), (0.7, 0.7)]
    assert [c.weights for c in heads.coders] == list(STAGE_BOX_WEIGHTS)
    assert heads.box_coder.weights == STAGE_BOX_WEIGHTS[-1]  # torchvision's postprocessing decodes the last stage
    assert heads.stage_weights == (1.0, 0.5, 0.25)
    assert all(p.bbox_pred.out_features == 4 for p in heads.box_predictors)  # class-agnostic regression
    assert STAGE_BOX_WEIGHTS == ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15))


def test_a_roi_at_iou_055_is_a_positive_of_stage_1_only(network):
    heads = network.roi_heads
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    # the same height, shifted right: IoU 20 * 14.2 / (2 * 400 - 20 * 14.2) = 0.55
    proposal = torch.tensor([[15.8, 10.0, 35.8, 30.0]])
    targets = [{"boxes": gt, "labels": torch.tensor([1]), "masks": torch.zeros(1, 40, 40, dtype=torch.uint8)}]
    labels_by_stage = []
    for stage in range(3):
        rois, matched, labels, regression, from_gt = heads.sample(stage, [proposal], targets)
        assert torch.equal(rois[0], torch.cat([proposal, gt])) and from_gt[0].tolist() == [False, True]
        labels_by_stage.append(labels[0].tolist())
        expected = heads.coders[stage].encode_single(gt, rois[0][:1])
        assert torch.allclose(regression[0][:1], expected)  # each stage encodes with its own weights
    assert labels_by_stage == [[1, 1], [0, 1], [0, 1]]


def test_each_stage_runs_on_the_boxes_the_stage_before_refined(network, blobs):
    model = network.eval()
    image = torch.from_numpy(cascade()._input(blobs["test"][0].load_image()).transpose(2, 0, 1).copy())
    images, features = _features(model, image)
    proposals, _ = model.rpn(images, features)
    heads = model.roi_heads
    rec = Recorder(heads)
    try:
        with torch.no_grad():
            found, _ = heads(features, proposals, images.image_sizes)
    finally:
        rec.remove()
    boxes, outputs = rec.boxes, rec.outputs
    assert len(boxes) == 3 and len(outputs) == 3
    assert torch.equal(boxes[0][0], proposals[0])
    for stage in (1, 2):
        expected = refine_boxes(heads.coders[stage - 1], outputs[stage - 1][1], boxes[stage - 1],
                                images.image_sizes)
        assert torch.allclose(boxes[stage][0], expected[0])
        assert not torch.allclose(boxes[stage][0], boxes[stage - 1][0])
    # the final boxes are the last stage's regression of its input, with its coder
    last = refine_boxes(heads.coders[2], outputs[2][1], boxes[2], images.image_sizes)[0]
    assert len(found[0]["boxes"]) > 0
    assert all(bool((last - box).abs().max(dim=1).values.min() < 1e-4) for box in found[0]["boxes"])


def test_training_stages_chain_too_without_the_added_ground_truth(network, blobs):
    model = network.train()
    set_input_size(model, 64, 64, 1.0)
    sample = blobs["train"][0]
    rng = np.random.default_rng(0)
    crop = random_crop(cascade()._input(sample.load_image()), sample.instances, 64, rng)
    inputs, targets = batch_tensors([crop])
    rec = Recorder(model.roi_heads)
    try:
        torch.manual_seed(0)
        losses = model(inputs, targets)
    finally:
        rec.remove()
        model.eval()
    assert {f"loss_{part}_stage{k}" for part in ("classifier", "box_reg", "mask") for k in (1, 2, 3)} < set(losses)
    gt = targets[0]["boxes"]
    for stage in (1, 2):
        refined = refine_boxes(model.roi_heads.coders[stage - 1], rec.outputs[stage - 1][1], rec.boxes[stage - 1],
                               [(64, 64)])[0]
        for box in rec.boxes[stage][0]:  # every RoI of this stage: a refined RoI of the last one, or a gt box
            near = lambda rows: bool((rows - box).abs().max(dim=1).values.min() < 1e-4)  # noqa: E731
            assert near(refined) or near(gt)
        # this stage's RoIs: the last stage's sampled RoIs refined, less the ground-truth boxes it added, and
        # the ground-truth boxes again
        added = sum(bool((rec.boxes[stage - 1][0] == g).all(dim=1).any()) for g in gt)
        assert added == len(gt) and sum(bool((rec.boxes[stage][0] == g).all(dim=1).any()) for g in gt) == len(gt)
        assert len(rec.boxes[stage][0]) == len(rec.boxes[stage - 1][0]) - added + len(gt)


def test_scores_are_the_softmax_of_the_three_stages_mean_logits(network, blobs):
    model = network.eval()
    image = torch.from_numpy(cascade()._input(blobs["test"][0].load_image()).transpose(2, 0, 1).copy())
    images, features = _features(model, image)
    proposals, _ = model.rpn(images, features)
    rec = Recorder(model.roi_heads)
    try:
        with torch.no_grad():
            found, _ = model.roi_heads(features, proposals, images.image_sizes)
    finally:
        rec.remove()
    logits = [out[0] for out in rec.outputs]
    assert not torch.allclose(logits[0], logits[1])
    expected = stage_scores(logits)[:, 1]
    assert torch.allclose(expected, torch.softmax((logits[0] + logits[1] + logits[2]) / 3, -1)[:, 1])
    scores = found[0]["scores"]
    # no NMS (threshold 1) and no threshold: every proposal's averaged score, best first
    assert len(scores) == len(expected)
    assert torch.allclose(scores.sort(descending=True).values, expected.sort(descending=True).values)
    last_only = torch.softmax(logits[2], -1)[:, 1].sort(descending=True).values
    assert not torch.allclose(scores.sort(descending=True).values, last_only)


def test_a_mask_rcnn_file_gives_the_cascade_its_backbone_and_rpn(tmp_path):
    torch.manual_seed(1)
    cls = get_method("maskrcnn")
    plain = cls(config_from_dict(cls.Config, {k: TINY[k] for k in ("backbone", "head_width")}))._new_model(1)
    torch.save(plain.state_dict(), tmp_path / "mrcnn.pth")
    method = cascade()
    torch.manual_seed(2)
    model = method._new_model(1)
    record = load_pretrained(model, tmp_path / "mrcnn.pth", class_heads=method.class_heads,
                             new_heads=method.new_heads)
    assert record["new_heads_initialised"] > 0 and record["file_heads_left_out"] > 0
    ours, theirs = model.state_dict(), plain.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in theirs.items() if not k.startswith("roi_heads."))


def test_cascade_config_and_description():
    cls = get_method("cascade")
    assert cls.supports_classes and cls.resumable
    assert "Cascade Mask RCNN seesaw" in cls.description and "cross-entropy" in cls.description
    assert cls.presets["cpu"] == get_method("maskrcnn").presets["cpu"]
    for bad in ({"stage_iou": [0.5, 0.6]}, {"stage_iou": [0.7, 0.6, 0.5]}, {"stage_weights": [1, -1, 1]},
                {"classifier_temperature": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            config_from_dict(cls.Config, bad)
    assert config_from_dict(cls.Config, {"classifier_temperature": None}).classifier_temperature is None
