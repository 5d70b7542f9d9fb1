"""Mask2Former: overlapping instances are targets and come out as instances, scored; weights files load or are
refused by name; the published network sizes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cellbench.errors import DataError  # noqa: E402
from cellbench.instances import Instance, InstanceSet  # noqa: E402
from cellbench.methods import config_from_dict, get_method  # noqa: E402
from cellbench.methods.adapters.detection.targets import random_crop  # noqa: E402
from cellbench.methods.adapters.mask2former.config import Mask2FormerConfig  # noqa: E402
from cellbench.methods.adapters.mask2former.inference import query_instances  # noqa: E402
from cellbench.methods.adapters.mask2former.network import build_network, forward, losses  # noqa: E402
from cellbench.methods.adapters.mask2former.targets import batch_targets  # noqa: E402
from cellbench.methods.adapters.mask2former.training import param_groups  # noqa: E402
from cellbench.methods.adapters.mask2former.weights import load_pretrained, read_weights, write_weights  # noqa: E402

TINY = {"backbone": "tiny", "hidden_dim": 32, "feature_size": 32, "encoder_layers": 1, "decoder_layers": 3,
        "num_heads": 2, "dim_feedforward": 64, "encoder_feedforward_dim": 64, "num_queries": 12,
        "train_num_points": 256, "crop_size": 64, "batch_size": 2, "epochs": 1, "crops_per_epoch": 2}


def tiny(**over) -> Mask2FormerConfig:
    return config_from_dict(Mask2FormerConfig, {**TINY, **over})


def overlapping_pair() -> InstanceSet:
    """Two 12 x 12 squares sharing a 4 x 12 band, of two classes, in a 32 x 32 image."""
    a = np.zeros((32, 32), bool)
    a[4:16, 4:16] = True
    b = np.zeros((32, 32), bool)
    b[12:24, 4:16] = True
    return InstanceSet((32, 32), (Instance.from_mask(a, class_id=0), Instance.from_mask(b, class_id=1)),
                       classes=("A", "B"))


# -- targets -------------------------------------------------------------------------------------------------------
def test_overlapping_instances_are_separate_targets():
    crop = random_crop(np.zeros((32, 32, 3), np.float32), overlapping_pair(), 32, np.random.default_rng(0),
                       augment=False)
    batch = batch_targets([crop, crop])
    masks, classes = batch.masks[0], batch.classes[0]
    assert tuple(batch.images.shape) == (2, 3, 32, 32)
    assert tuple(masks.shape) == (2, 32, 32) and classes.tolist() == [0, 1]
    assert int(masks.sum()) == 2 * 144 and int((masks[0] * masks[1]).sum()) == 48  # the shared band in both


def test_loss_is_finite_with_overlaps_and_on_empty_crops_and_falls_on_one_batch():
    torch.manual_seed(0)
    model = build_network(tiny(), n_classes=2)
    image = np.zeros((32, 32, 3), np.float32)
    image[4:24, 4:16] = 1.0
    crop = random_crop(image, overlapping_pair(), 32, np.random.default_rng(0), augment=False)
    empty = random_crop(image, InstanceSet((32, 32), classes=("A", "B")), 32, np.random.default_rng(0))
    batch = batch_targets([crop, empty])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seen = []
    model.train()
    for _ in range(15):
        terms = losses(model, forward(model, batch.images, scale=1.0, auxiliary=True), batch.masks, batch.classes)
        assert {"loss_mask", "loss_dice", "loss_cross_entropy", "loss_dice_0"} <= set(terms)
        loss = sum(terms.values())
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(float(loss.detach()))
    assert np.mean(seen[-3:]) < 0.8 * np.mean(seen[:3])


def test_optimizer_groups_follow_mask2formers_recipe():
    cfg = tiny(lr=1e-3, backbone_lr_factor=0.1, weight_decay=0.05)
    model = build_network(cfg, n_classes=1)
    groups = param_groups(model, cfg)
    assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])
    assert sorted({(g["lr"], g["weight_decay"]) for g in groups}) == [(1e-4, 0.0), (1e-4, 0.05), (1e-3, 0.0),
                                                                      (1e-3, 0.05)]
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["model.transformer_module.queries_features.weight"]) in no_decay
    assert id(named["model.pixel_level_module.decoder.level_embed"]) in no_decay
    assert id(named["class_predictor.weight"]) not in no_decay


# -- prediction ----------------------------------------------------------------------------------------------------
def test_overlapping_queries_both_come_out_scored_best_first():
    masks = torch.full((4, 20, 20), -8.0)
    masks[0, 2:12, 2:12] = 8.0
    masks[1, 8:18, 8:18] = 8.0  # overlaps query 0
    masks[2, 0:5, 15:20] = 8.0  # a confident "no object"
    masks[3, 15:20, 0:5] = 8.0  # class 1, less sure
    logits = torch.tensor([[4.0, -4.0, -4.0], [3.0, -3.0, -3.0], [-6.0, -6.0, 6.0], [-2.0, 1.0, -2.0]])
    found = query_instances(logits, masks, score_threshold=0.3, mask_threshold=0.5, max_instances=12)
    assert [i.bbox for i in found] == [(2, 2, 12, 12), (8, 8, 18, 18), (15, 0, 20, 5)]
    assert [i.class_id for i in found] == [0, 0, 1]
    scores = [i.score for i in found]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    probs = logits.softmax(-1)
    assert scores[0] == pytest.approx(float(probs[0, 0]) * float(torch.sigmoid(torch.tensor(8.0))), rel=1e-6)
    shared = found[0].to_full((20, 20)) & found[1].to_full((20, 20))
    assert shared.sum() == 16
    # fewer pairs, a higher threshold
    assert len(query_instances(logits, masks, score_threshold=0.3, mask_threshold=0.5, max_instances=1)) == 1
    assert len(query_instances(logits, masks, score_threshold=0.997, mask_threshold=0.5, max_instances=12)) == 1


def test_network_masks_are_brought_to_the_image_pixels():
    masks = torch.full((1, 4, 4), -8.0)
    masks[0, :2, :2] = 8.0  # the top left quarter of a 16 x 16 padded input
    found = query_instances(torch.tensor([[5.0, -5.0]]), masks, score_threshold=0.1, mask_threshold=0.5,
                            max_instances=5, shape=(10, 10), input_size=(10, 10))
    assert len(found) == 1 and found[0].bbox[:2] == (0, 0) and 7 <= found[0].bbox[2] <= 9


def test_prediction_keeps_classes_and_tiles_default_to_the_crop(blobs):
    cls = get_method("mask2former")
    assert cls.supports_classes and cls.resumable
    assert cls.tiling_defaults(tiny()) == {"tile": 64, "overlap": 16}
    method = cls(tiny(score_threshold=0.0, mask_threshold=0.3))
    with pytest.raises(DataError, match="train or load"):
        method.predict(blobs["test"][0].load_image())
    image = blobs["test"][0].load_image()
    two_classes = [s.__class__(s.name, s.instances.replace(classes=("a", "b")), array=s.load_image())
                   for s in blobs["train"]]
    method.train(two_classes, seed=0)
    found = method.predict(image)
    assert found.classes == ("a", "b") and len(found) > 0 and all(i.score is not None for i in found)


# -- weights -------------------------------------------------------------------------------------------------------
def test_whole_model_file_loads_with_a_new_class_layer(tmp_path):
    torch.manual_seed(1)
    theirs = build_network(tiny(), n_classes=5)
    write_weights(theirs, tmp_path / "m2f.safetensors")
    torch.manual_seed(2)
    ours = build_network(tiny(), n_classes=2)
    info = load_pretrained(ours, tmp_path / "m2f.safetensors", backbone="tiny")
    assert info["class_heads_reinitialised"]
    mine, other = ours.state_dict(), theirs.state_dict()
    key = "model.pixel_level_module.encoder.swin.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(mine[key], other[key])
    assert mine["class_predictor.weight"].shape[0] == 3


def test_classifier_file_loads_into_the_backbone_alone(tmp_path):
    from safetensors.torch import save_file
    from transformers import SwinConfig, SwinForImageClassification

    from cellbench.methods.adapters.mask2former.backbones import REGISTRY

    torch.manual_seed(3)
    classifier = SwinForImageClassification(SwinConfig(**dict(REGISTRY["tiny"].options), num_labels=7))
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(tmp_path / "swin.safetensors"))
    model = build_network(tiny(), n_classes=1)
    info = load_pretrained(model, tmp_path / "swin.safetensors", backbone="tiny")
    assert info["backbone_only"] and info["left_out"] > 0  # the classifier and its last norm
    mine = model.state_dict()
    for key, value in classifier.state_dict().items():
        if key.startswith("swin.encoder."):
            assert torch.equal(mine["model.pixel_level_module.encoder." + key], value)
    with pytest.raises(DataError, match="swin.safetensors"):  # a Swin of another width
        load_pretrained(build_network(tiny(backbone="swin_t_w48"), n_classes=1), tmp_path / "swin.safetensors",
                        backbone="swin_t_w48")


def _with_index(state: dict) -> dict:
    """``state`` with the ``relative_position_index`` buffers transformers 4 saved beside each Swin bias table (the
    Hub's Swin files hold them; transformers 5 rebuilds them)."""
    return state | {k.replace("bias_table", "index"): torch.zeros(49, dtype=torch.long)
                    for k in state if k.endswith("relative_position_bias_table")}


def test_swin_classifier_with_transformers_4_names_loads_as_from_pretrained_loads_it(tmp_path):
    """transformers 5's save_pretrained writes a Swin's tensors under transformers 4's names (its conversion mapping
    reversed), the names of the Hub's Swin files: the lone file loads into the backbone and gives the backbone
    outputs that transformers' own from_pretrained of the folder gives."""
    from safetensors.torch import load_file, save_file
    from transformers import SwinBackbone, SwinConfig, SwinForImageClassification

    from cellbench.methods.adapters.mask2former.backbones import OUT_FEATURES, REGISTRY
    from cellbench.methods.adapters.mask2former.weights import SWIN_RENAMES, swin_names

    torch.manual_seed(4)
    classifier = SwinForImageClassification(SwinConfig(**dict(REGISTRY["tiny"].options), num_labels=7))
    classifier.save_pretrained(tmp_path / "hf")
    written = load_file(tmp_path / "hf" / "model.safetensors")
    assert any(".attention.self.query." in k for k in written) and not any(".q_proj." in k for k in written)
    assert set(swin_names(written)) == set(classifier.state_dict())  # the map is transformers' own, forwards
    reversed_map = set()
    for key in classifier.state_dict():
        key = f".{key}."
        for old, new in reversed(SWIN_RENAMES):
            key = key.replace(f".{new}.", f".{old}.")
        reversed_map.add(key[1:-1])
    assert reversed_map == set(written)  # ... and backwards
    save_file(_with_index(written), tmp_path / "swin.safetensors")
    model = build_network(tiny(), n_classes=1).eval()
    info = load_pretrained(model, tmp_path / "swin.safetensors", backbone="tiny")
    assert info["backbone_only"]
    ours = model.model.pixel_level_module.encoder
    theirs = SwinBackbone.from_pretrained(tmp_path / "hf", out_features=list(OUT_FEATURES), local_files_only=True)
    theirs.hidden_states_norms.load_state_dict(ours.hidden_states_norms.state_dict())  # in neither file
    theirs.eval()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ours(x).feature_maps, theirs(x).feature_maps, strict=True))
    one = "swin.encoder.layers.0.blocks.0.attention.q_proj.weight"
    save_file(written | {one: classifier.state_dict()[one]}, tmp_path / "both.safetensors")
    with pytest.raises(DataError, match=f"both.safetensors: two tensors are named '{one}'"):
        load_pretrained(model, tmp_path / "both.safetensors", backbone="tiny")


def test_lone_mask2former_file_with_transformers_4_names_loads_as_its_folder_does(tmp_path):
    """A Mask2Former COCO model.safetensors on its own (transformers 4 wrote them: the Swin's old names, the
    SwinModel's parts straight under the backbone, no last LayerNorm) loads whole, as from_pretrained loads it."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(5)
    build_network(tiny(), n_classes=3).save_pretrained(tmp_path / "hf")
    written = load_file(tmp_path / "hf" / "model.safetensors")
    legacy = _with_index({k: v for k, v in written.items() if ".swin.layernorm." not in k})
    assert "model.pixel_level_module.encoder.encoder.layers.0.blocks.0.attention.self.query.weight" in legacy
    save_file(legacy, tmp_path / "model.safetensors")
    lone, folder = build_network(tiny(), n_classes=3).eval(), build_network(tiny(), n_classes=3).eval()
    assert not load_pretrained(lone, tmp_path / "model.safetensors", backbone="tiny")["class_heads_reinitialised"]
    load_pretrained(folder, tmp_path / "hf", backbone="tiny")
    mine, other = lone.state_dict(), folder.state_dict()
    assert mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine)
    with torch.no_grad():  # the LayerNorm the lone file lacks kept its initialisation: no output passes through it
        lone.model.pixel_level_module.encoder.swin.layernorm.weight.normal_()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = lone(pixel_values=x), folder(pixel_values=x)
    assert torch.equal(a.masks_queries_logits, b.masks_queries_logits)
    assert torch.equal(a.class_queries_logits, b.class_queries_logits)


def test_bad_weights_files_are_refused_by_name(tmp_path):
    model = build_network(tiny(), n_classes=1)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="junk.safetensors"):
        read_weights(tmp_path / "junk.safetensors")
    torch.save({"note": "text"}, tmp_path / "x.pt")
    with pytest.raises(DataError, match="x.pt"):
        load_pretrained(model, tmp_path / "x.pt", backbone="tiny")
    torch.save(build_network(tiny(num_queries=5), n_classes=1).state_dict(), tmp_path / "q5.pt")
    with pytest.raises(DataError, match="q5.pt.*shape differs"):
        load_pretrained(model, tmp_path / "q5.pt", backbone="tiny")


def test_saved_weights_of_another_backbone_are_refused(blobs, tmp_path):
    cls = get_method("mask2former")
    method = cls(tiny())
    method.train(blobs["train"][:1], seed=0)
    method.save_weights(tmp_path)
    assert (tmp_path / "mask2former.safetensors").is_file()
    with pytest.raises(DataError, match="backbone 'tiny'"):
        cls(tiny(backbone="swin_t_w48")).load_weights(tmp_path)


def test_default_network_has_mask2formers_published_size():
    """ResNet-50 Mask2Former has 44 M parameters (Cheng et al. 2022, Table 1); Swin-T 47 M."""
    from transformers import Mask2FormerForUniversalSegmentation

    from cellbench.methods.adapters.mask2former.network import network_config

    with torch.device("meta"):  # sizes only, no memory
        counts = {b: sum(p.numel() for p in Mask2FormerForUniversalSegmentation(
            network_config(Mask2FormerConfig(backbone=b), 80)).parameters()) for b in ("resnet50", "swin_t")}
    assert round(counts["resnet50"] / 1e6) == 44 and round(counts["swin_t"] / 1e6) == 47


def test_unknown_pretrained_name_says_what_it_tried(blobs):
    cls = get_method("mask2former")
    with pytest.raises(DataError, match="no-such-model-anywhere"):
        cls(tiny(pretrained="no-such-model-anywhere")).train(blobs["train"][:1], seed=0)


def test_hugging_face_folder_loads_through_from_pretrained(tmp_path, blobs):
    torch.manual_seed(4)
    theirs = build_network(tiny(), n_classes=3)
    theirs.save_pretrained(tmp_path / "hf")
    cls = get_method("mask2former")
    method = cls(tiny(pretrained=str(tmp_path / "hf"), epochs=1, crops_per_epoch=1, batch_size=1))
    history = method.train(blobs["train"][:1], seed=0)
    assert history.info["from"] == str(tmp_path / "hf") and history.info["class_heads_reinitialised"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_pretrained(build_network(tiny(), n_classes=1), tmp_path / "empty", backbone="tiny")
