"""ImageNet backbones by registry name: each entry names a backbone its method builds and the sha256 the Hugging Face
Hub publishes, and a file in its publisher's layout (small random stand-ins, served from a mirror folder or a server
on 127.0.0.1: no test reaches the internet) loads into that backbone through the method's own loader."""

from __future__ import annotations

import re

import pytest

from fake_registry import replace_file

from cellbench.pretrained import get_pretrained, list_pretrained

IMAGENET = ("maskrcnn/resnet18_imagenet", "maskrcnn/resnet50_imagenet", "mask2former/resnet50_imagenet",
            "mask2former/swin_t_imagenet")
HUB_URL = r"https://huggingface\.co/([\w.-]+)/([\w.-]+)/resolve/(main|[0-9a-f]{40})/([\w.]+)"


def test_imagenet_entries_name_a_backbone_of_their_method_and_the_hubs_sha256():
    from cellbench.methods.adapters.detection.backbones import REGISTRY as DETECTION
    from cellbench.methods.adapters.mask2former.backbones import REGISTRY as MASK2FORMER

    for name in IMAGENET:
        entry = get_pretrained(name)
        (remote,) = entry.files
        owner, repo, revision, file = re.fullmatch(HUB_URL, remote.url).groups()
        assert remote.file_name == f"{owner}--{repo}--{file}" and remote.sha256 and entry.checksum_published
        assert f"https://huggingface.co/{owner}/{repo}/blob/{revision}/{file}" in entry.checksum_source
        backbone = entry.settings["backbone"]
        if entry.method == "maskrcnn":  # timm's classifier of the very architecture the backbone builds
            assert owner == "timm" and repo.split(".")[0] == DETECTION[backbone].model
            assert entry.methods == ("maskrcnn", "msrcnn", "cascade", "solov2", "retinamask", "centermask2")
        else:
            assert entry.method == "mask2former" and backbone in MASK2FORMER
    names = [f.file_name for e in list_pretrained() for f in e.files]
    assert len(names) == len(set(names))  # one mirror folder holds every file under its registry name


def _safetensors(state: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def test_timm_safetensors_loads_into_the_maskrcnn_backbone(fake_mirror, monkeypatch):
    """timm's classifier of resnet18, in the entry's safetensors format, pulled by registry name over HTTP and
    loaded the way maskrcnn loads ``pretrained`` (read_state_dict, then the backbone's trunk)."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from local_server import serve

    from cellbench.methods.adapters.detection.backbones import REGISTRY, build_backbone
    from cellbench.methods.adapters.detection.weights import load_backbone, read_state_dict, resolve_weights

    load = torch.load

    def old_torch_load(f, *args, **kwargs):  # torch.load before 2026 reads no safetensors file; it is never asked
        assert not str(f).endswith(".safetensors")
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", old_torch_load)
    mirror, _ = fake_mirror
    name = "maskrcnn/resnet18_imagenet"
    torch.manual_seed(0)
    classifier = timm.create_model(REGISTRY["resnet18"].model, pretrained=False).state_dict()
    replace_file(monkeypatch, mirror, name, get_pretrained(name).files[0].file_name, _safetensors(classifier))
    with serve(mirror) as server:
        monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", server.url() + "/")
        path = resolve_weights("resnet18_imagenet", method="maskrcnn")
    body = build_backbone("resnet18", trainable_layers=5).body
    info = load_backbone(body, read_state_dict(path), path)
    assert info["backbone_only"] and info["left_out"] == 2  # fc.weight, fc.bias
    trunk = {k.removeprefix("trunk."): v for k, v in body.state_dict().items()}  # timm's trunks sit under trunk.
    assert torch.equal(trunk["layer1.0.conv1.weight"], classifier["layer1.0.conv1.weight"])


def _mask2former(backbone: str):
    pytest.importorskip("transformers")
    from cellbench.methods import config_from_dict
    from cellbench.methods.adapters.mask2former.config import Mask2FormerConfig
    from cellbench.methods.adapters.mask2former.network import build_network

    small = {"backbone": backbone, "hidden_dim": 32, "feature_size": 32, "encoder_layers": 1, "decoder_layers": 3,
             "num_heads": 2, "dim_feedforward": 64, "encoder_feedforward_dim": 64, "num_queries": 12}
    return build_network(config_from_dict(Mask2FormerConfig, small), n_classes=1)


def test_hugging_face_resnet50_classifier_loads_into_the_mask2former_backbone(fake_mirror, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import ResNetConfig, ResNetForImageClassification

    from cellbench.methods.adapters.mask2former.weights import load_pretrained, resolve_pretrained

    mirror, _ = fake_mirror
    name = "mask2former/resnet50_imagenet"
    torch.manual_seed(0)  # microsoft/resnet-50's config: bottleneck blocks 3, 4, 6, 3 and 1000 ImageNet classes
    classifier = ResNetForImageClassification(ResNetConfig(depths=[3, 4, 6, 3], layer_type="bottleneck",
                                                           num_labels=1000)).state_dict()
    replace_file(monkeypatch, mirror, name, get_pretrained(name).files[0].file_name, _safetensors(classifier))
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    path = resolve_pretrained(name)
    model = _mask2former("resnet50")
    info = load_pretrained(model, path, backbone="resnet50")
    assert info["backbone_only"] and info["left_out"] == 2  # classifier.1.weight / bias
    key = "encoder.stages.3.layers.2.layer.2.convolution.weight"
    assert torch.equal(model.state_dict()["model.pixel_level_module.encoder." + key], classifier["resnet." + key])


# transformers 4 names -> transformers 5 names of a Swin classifier (transformers' conversion_mapping for "swin")
SWIN_4_NAMES = (("attention.q_proj", "attention.self.query"), ("attention.k_proj", "attention.self.key"),
                ("attention.v_proj", "attention.self.value"), ("attention.o_proj", "attention.output.dense"),
                ("attention.relative_position_bias.relative_position_bias_table",
                 "attention.self.relative_position_bias_table"),
                ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"))


def test_swin_classifier_with_transformers_4_names_loads_into_the_mask2former_backbone(fake_mirror, monkeypatch):
    # the Hub's Swin classifier (2023) has transformers 4 names and relative_position_index: mapped before matching
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import SwinConfig, SwinForImageClassification

    from cellbench.methods.adapters.mask2former.backbones import REGISTRY
    from cellbench.methods.adapters.mask2former.weights import load_pretrained, resolve_pretrained

    mirror, _ = fake_mirror
    name = "mask2former/swin_t_imagenet"
    torch.manual_seed(0)  # Swin-T's layout at the "tiny" test size
    classifier = SwinForImageClassification(SwinConfig(**dict(REGISTRY["tiny"].options), num_labels=1000))
    legacy = {}
    for key, value in classifier.state_dict().items():
        for new, old in SWIN_4_NAMES:
            key = key.replace(new, old)
        legacy[key] = value
        if key.endswith("relative_position_bias_table"):  # a persistent buffer in transformers 4
            legacy[key.replace("bias_table", "index")] = torch.zeros(49, dtype=torch.long)
    replace_file(monkeypatch, mirror, name, get_pretrained(name).files[0].file_name, _safetensors(legacy))
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    model = _mask2former("tiny")
    info = load_pretrained(model, resolve_pretrained(name), backbone="tiny")
    assert info["backbone_only"] and info["left_out"] == 2 + 4  # classifier weight / bias, 4 relative_position_index
    key = "swin.encoder.layers.3.blocks.0.attention.o_proj.weight"
    assert torch.equal(model.state_dict()["model.pixel_level_module.encoder." + key], classifier.state_dict()[key])
