"""Mask R-CNN: the network is torchvision's v2 one, COCO-style weights load, overlaps and classes survive."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cellbench.data.dataset import Sample  # noqa: E402
from cellbench.errors import DataError  # noqa: E402
from cellbench.instances import Instance, InstanceSet  # noqa: E402
from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.inference import paste_mask  # noqa: E402
from cellbench.methods.adapters.detection.maskrcnn import CLASS_HEADS, NetworkSettings, build_network  # noqa: E402
from cellbench.methods.adapters.detection.targets import random_crop  # noqa: E402
from cellbench.methods.adapters.detection.weights import load_pretrained as load_weights_file  # noqa: E402
from cellbench.methods.model_dir import load_model, save_model, train_summary  # noqa: E402
from cellbench.methods.tiling import TileConfig  # noqa: E402

TINY = {"backbone": "resnet18", "head_width": 16, "patch_size": 64, "batch_size": 2, "epochs": 1,
        "crops_per_epoch": 2, "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 16, "rpn_post_nms": 50,
        "detections_per_image": 20, "score_threshold": 0.0, "mask_threshold": 0.0}


def load_pretrained(model, path):
    return load_weights_file(model, path, class_heads=CLASS_HEADS)


def settings(backbone="resnet18", num_classes=3, width=16):
    return NetworkSettings(backbone=backbone, num_classes=num_classes, trainable_layers=5,
                           anchor_sizes=(32, 64, 128, 256, 512), detections_per_image=3000, rpn_post_nms=3000,
                           roi_batch_size=512, score_threshold=0.05, nms_threshold=0.5, head_width=width)


def test_resnet50_network_is_torchvisions_v2_maskrcnn():
    """Same parameter names and shapes as maskrcnn_resnet50_fpn_v2, so its COCO checkpoint loads."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    ours = build_network(settings("resnet50", num_classes=91, width=256)).state_dict()
    theirs = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_defaults_allow_3000_detections():
    method = get_method("maskrcnn")()
    assert method.config.detections_per_image == 3000 and method.config.rpn_post_nms == 3000
    net = method._new_model(2)
    assert net.roi_heads.detections_per_img == 3000 and net.rpn.post_nms_top_n() == 3000


def test_pretrained_weights_load_except_class_heads(tmp_path):
    torch.manual_seed(1)
    coco = build_network(settings(num_classes=91))
    torch.save(coco.state_dict(), tmp_path / "coco.pth")
    torch.manual_seed(2)
    ours = build_network(settings(num_classes=3))
    info = load_pretrained(ours, tmp_path / "coco.pth")
    assert info["class_heads_reinitialised"]
    mine, theirs = ours.state_dict(), coco.state_dict()
    assert torch.equal(mine["backbone.body.conv1.weight"], theirs["backbone.body.conv1.weight"])
    assert torch.equal(mine["roi_heads.mask_head.0.0.weight"], theirs["roi_heads.mask_head.0.0.weight"])
    assert mine["roi_heads.box_predictor.cls_score.weight"].shape[0] == 3


def test_pretrained_weights_of_another_backbone_are_refused(tmp_path):
    torch.save(build_network(settings("resnet34")).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(DataError, match="do not fit"):
        load_pretrained(build_network(settings("resnet18")), tmp_path / "r34.pth")
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(DataError, match="junk.pth"):
        load_pretrained(build_network(settings()), tmp_path / "junk.pth")


def test_unknown_pretrained_name_says_what_it_tried(blobs):
    cls = get_method("maskrcnn")
    method = cls(config_from_dict(cls.Config, {**TINY, "pretrained": "no-such-model-anywhere"}))
    with pytest.raises(DataError, match="no-such-model-anywhere"):
        method.train(blobs["train"], seed=0)


def test_paste_fills_exactly_the_box():
    inst = paste_mask(torch.ones(28, 28), np.array([2.0, 3.0, 10.0, 8.0]), (20, 20), 0.5)
    assert inst.bbox == (3, 2, 8, 10) and inst.area == 40
    assert paste_mask(torch.zeros(28, 28), np.array([2.0, 3.0, 10.0, 8.0]), (20, 20), 0.5) is None


def test_training_crops_keep_overlapping_instances_and_classes():
    a = Instance.from_mask(np.pad(np.ones((6, 6), bool), ((2, 12), (2, 12))), class_id=0)
    b = Instance.from_mask(np.pad(np.ones((6, 6), bool), ((5, 9), (5, 9))), class_id=1)  # overlaps a
    s = InstanceSet(shape=(20, 20), instances=(a, b), classes=("A", "B"))
    crop = random_crop(np.zeros((20, 20, 3), np.float32), s, 32, np.random.default_rng(0))
    assert crop.masks.shape == (2, 32, 32) and sorted(crop.labels.tolist()) == [1, 2]
    assert (crop.masks[0] & crop.masks[1]).sum() == 9  # the shared 3 x 3 pixels, in both targets
    for mask, box in zip(crop.masks, crop.boxes):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def two_class(sample: Sample) -> Sample:
    """Blobs relabelled into two classes by size (A: small, B: large)."""
    classes = ("A", "B")
    median = np.median([i.area for i in sample.instances])
    instances = tuple(i.replace(class_id=int(i.area > median)) for i in sample.instances)
    return Sample(sample.name, sample.instances.replace(instances=instances, classes=classes), array=sample.array)


def test_one_model_learns_every_class_and_keeps_them_on_reload(blobs, tmp_path):
    cls = get_method("maskrcnn")
    assert cls.supports_classes
    train = [two_class(s) for s in blobs["train"]]
    method = cls(config_from_dict(cls.Config, TINY))
    history = method.train(train, seed=0)
    assert history.info["classes"] == ["A", "B"]
    image = blobs["test"][0].load_image()
    found = method.predict(image)
    assert found.classes == ("A", "B") and len(found) > 0 and found.scores is not None
    save_model(method, tmp_path / "m", train_summary=train_summary(train), seed=0, history=history,
               tiling=TileConfig(tile=0))
    again = load_model(tmp_path / "m").method
    assert again.predict(image).classes == ("A", "B")


def test_training_images_with_different_classes_are_refused(blobs):
    cls = get_method("maskrcnn")
    with pytest.raises(DataError, match="classes"):
        cls(config_from_dict(cls.Config, TINY)).train([two_class(blobs["train"][0]), blobs["train"][1]])
