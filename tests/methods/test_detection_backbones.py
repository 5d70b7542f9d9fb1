"""The detectors' backbones: every registered one gives the FPN levels at the right strides on odd sizes,
freezes like torchvision, and takes an ImageNet classifier's weights into its trunk alone."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from cellbench.errors import DataError  # noqa: E402
from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.backbones import BACKBONES, REGISTRY, build_backbone  # noqa: E402
from cellbench.methods.adapters.detection.maskrcnn import CLASS_HEADS, NetworkSettings, build_network  # noqa: E402
from cellbench.methods.adapters.detection.weights import load_pretrained  # noqa: E402


def needs(name: str) -> None:
    if REGISTRY[name].source == "timm":
        pytest.importorskip("timm")


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_gives_p2_to_p6_on_an_odd_sized_input(name):
    """200 x 264 is no multiple of 32 (HRNet fuses by exact factors of 2, Swin's windows are 7 wide): each
    level is ceil(size / stride) as a ResNet gives it, 256 channels, P6 by max pool."""
    needs(name)
    backbone = build_backbone(name, trainable_layers=5).eval()
    with torch.no_grad():
        out = backbone(torch.rand(1, 3, 200, 264))
    sizes = {k: tuple(v.shape) for k, v in out.items()}
    expected = {key: (1, 256, math.ceil(200 / s), math.ceil(264 / s))
                for key, s in zip(["0", "1", "2", "3", "pool"], [4, 8, 16, 32, 64], strict=True)}
    assert sizes == expected and backbone.out_channels == 256


def test_backbone_names_are_the_registry_and_import_without_torch():
    assert BACKBONES == tuple(REGISTRY) and {"swin_t", "swin_s", "resnest50", "res2net50", "hrnet_w32"} <= set(BACKBONES)
    code = ("import sys; from cellbench.methods import get_method; c = get_method('maskrcnn'); "
            "c.Config(backbone='swin_t'); assert 'torch' not in sys.modules and 'swin_t' in c.description")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_swin_keeps_7_px_windows_shifted_every_other_block_at_any_size():
    """As MMDetection's Swin: timm would shrink the last stage's window to the 224 px model's 7 x 7 grid and
    drop its shift; here windows and shifts are those of the paper at every stage, the map padded to them."""
    pytest.importorskip("timm")
    trunk = build_backbone("swin_t", trainable_layers=5).body.trunk
    blocks = [b for name, b in trunk.named_modules() if type(b).__name__ == "SwinTransformerBlock"]
    assert len(blocks) == 12 and all(b.window_size == (7, 7) for b in blocks)
    assert [b.shift_size for b in blocks] == [(0, 0), (3, 3)] * 6


def test_trainable_layers_freeze_the_stem_and_first_stages_as_torchvision_does():
    pytest.importorskip("timm")
    trunk = build_backbone("swin_t", trainable_layers=3).body.trunk
    frozen = {n.split(".")[0] for n, p in trunk.named_parameters() if not p.requires_grad}
    trained = {n.split(".")[0] for n, p in trunk.named_parameters() if p.requires_grad}
    assert frozen == {"patch_embed", "layers_0"} and trained == {"layers_1", "layers_2", "layers_3"}
    hrnet = build_backbone("hrnet_w32", trainable_layers=2).body.trunk
    trained = {n.split(".")[0] for n, p in hrnet.named_parameters() if p.requires_grad}
    assert trained == {"transition2", "stage3", "transition3", "stage4"}


def settings(backbone: str) -> NetworkSettings:
    return NetworkSettings(backbone=backbone, num_classes=2, trainable_layers=5, anchor_sizes=(8, 16, 32, 64, 128),
                           detections_per_image=10, rpn_post_nms=20, roi_batch_size=8, score_threshold=0.0,
                           nms_threshold=0.5, head_width=8)


def test_an_imagenet_classifier_loads_into_the_trunk_alone(tmp_path):
    """timm's full classifier (head and last norm included) into swin_t; torchvision's ResNet-18 (fc included)."""
    timm = pytest.importorskip("timm")
    from torchvision.models import resnet18

    classifier = timm.create_model(REGISTRY["swin_t"].model, pretrained=False)
    torch.save({"state_dict": classifier.state_dict()}, tmp_path / "swin.pth")  # timm's training checkpoints wrap
    model = build_network(settings("swin_t"))
    info = load_pretrained(model, tmp_path / "swin.pth", class_heads=CLASS_HEADS)
    assert info["backbone_only"] and info["left_out"] == 4  # norm.weight / bias, head.fc.weight / bias
    trunk = model.backbone.body.trunk.state_dict()
    theirs = classifier.state_dict()
    assert torch.equal(trunk["layers_2.blocks.5.attn.qkv.weight"], theirs["layers.2.blocks.5.attn.qkv.weight"])
    assert torch.equal(trunk["patch_embed.proj.weight"], theirs["patch_embed.proj.weight"])

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    model = build_network(settings("resnet18"))
    assert load_pretrained(model, tmp_path / "r18.pth")["left_out"] == 2  # fc.weight, fc.bias


def test_a_classifier_of_another_depth_is_refused_naming_the_file(tmp_path):
    """ResNet-34 holds every weight of ResNet-18 (and more blocks): it must not load its first blocks quietly."""
    from torchvision.models import resnet18, resnet34

    torch.save(resnet34(weights=None).state_dict(), tmp_path / "r34-imagenet.pth")
    with pytest.raises(DataError, match=r"r34-imagenet\.pth.*do not fit this backbone \(unexpected: \['layer1\.2\."):
        load_pretrained(build_network(settings("resnet18")), tmp_path / "r34-imagenet.pth")
    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18-imagenet.pth")
    with pytest.raises(DataError, match=r"r18-imagenet\.pth.*do not fit this backbone \(missing: \['layer1\.2\."):
        load_pretrained(build_network(settings("resnet34")), tmp_path / "r18-imagenet.pth")


def test_resnest_needs_two_crops_per_step():
    cls = get_method("maskrcnn")
    with pytest.raises(ValueError, match="batch_size >= 2"):
        config_from_dict(cls.Config, {"backbone": "resnest50", "batch_size": 1})
    assert config_from_dict(cls.Config, {"backbone": "resnest50", "batch_size": 2}).backbone == "resnest50"


def test_maskrcnn_trains_from_an_imagenet_backbone_file(blobs, tmp_path):
    """``pretrained: <classifier file>``: the trunk starts from it, stem and first stage frozen (torchvision's
    default when pretrained), and the training records where its weights came from."""
    from torchvision.models import resnet18

    torch.manual_seed(3)
    imagenet = resnet18(weights=None).state_dict()
    torch.save(imagenet, tmp_path / "r18.pth")
    cls = get_method("maskrcnn")
    tiny = {"backbone": "resnet18", "pretrained": str(tmp_path / "r18.pth"), "head_width": 16, "patch_size": 64,
            "epochs": 1, "crops_per_epoch": 2, "anchor_sizes": [8, 16, 32, 64, 128], "roi_batch_size": 16,
            "rpn_post_nms": 50}
    method = cls(config_from_dict(cls.Config, tiny))
    history = method.train(blobs["train"], seed=0)
    assert history.info["backbone_only"] and history.info["name"] == str(tmp_path / "r18.pth")
    body = method._model.backbone.body
    assert torch.equal(body.conv1.weight, imagenet["conv1.weight"])  # frozen: still the file's
    assert not torch.equal(body.layer4[0].conv1.weight, imagenet["layer4.0.conv1.weight"])  # trained
