import numpy as np
import pytest
import torch
from torch import nn

from cellbench.methods.adapters.cellseg1.backbones import tiny_sam
from cellbench.methods.adapters.cellseg1.forward import decode_points, encode
from cellbench.methods.adapters.cellseg1.lora import LoRA, LoRALinear, lora_state_dict, qv_output_indices


def _frozen_copy(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_only_lora_is_trainable_and_covers_encoder_and_decoder_q_v():
    bb = tiny_sam()
    wrapped = LoRA(rank=4, dropout=0.1).apply(bb.model)
    # 2 encoder blocks (fused qkv) + decoder: 2 layers x 3 attentions + final, q and v each
    assert sum(n.startswith("image_encoder") for n in wrapped) == 2
    assert sum(n.startswith("mask_decoder") for n in wrapped) == 2 * 7
    trainable = [n for n, p in bb.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not any(p.requires_grad for n, p in bb.model.named_parameters() if "lora_" not in n)
    assert set(lora_state_dict(bb.model)) == set(trainable)


def test_parts_choice_and_validation():
    bb = tiny_sam()
    wrapped = LoRA(parts=("mask_decoder",)).apply(bb.model)
    assert all(n.startswith("mask_decoder") for n in wrapped)
    with pytest.raises(ValueError):
        LoRA(rank=0)
    with pytest.raises(ValueError):
        LoRA(parts=("prompt_encoder",))


def test_fresh_lora_computes_what_the_frozen_model_did():
    ref, bb = tiny_sam(), tiny_sam()
    LoRA().apply(bb.model)
    bb.model.eval()
    x = torch.randn(1, 3, 64, 64)
    pts = torch.tensor([[10.0, 20.0], [40.0, 5.0]])
    with torch.no_grad():
        e0, e1 = encode(ref, x), encode(bb, x)
        assert torch.allclose(e0, e1, atol=1e-6)
        (l0, i0), (l1, i1) = decode_points(ref, e0, pts), decode_points(bb, e1, pts)
    assert torch.allclose(l0, l1, atol=1e-5) and torch.allclose(i0, i1, atol=1e-6)


def test_training_step_changes_lora_only():
    bb = tiny_sam()
    LoRA(dropout=0.0).apply(bb.model)
    before = _frozen_copy(bb.model)
    opt = torch.optim.AdamW([p for p in bb.model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        emb = encode(bb, torch.randn(1, 3, 64, 64))
        logits, iou = decode_points(bb, emb, torch.tensor([[30.0, 30.0]]))
        (logits.mean() + iou.mean()).backward()
        opt.step()
        opt.zero_grad()
    after = bb.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k for k in changed)
    assert any("lora_B" in k and "image_encoder" in k for k in changed)


def test_fused_qkv_updates_only_q_and_v_features():
    base = nn.Linear(6, 18)
    layer = LoRALinear(base, [torch.arange(0, 6), torch.arange(12, 18)], rank=2, dropout=0.0)
    with torch.no_grad():
        for b in layer.lora_B:
            b.fill_(1.0)
    x = torch.randn(4, 6)
    diff = (layer(x) - base(x)).abs().sum(0)
    assert (diff[6:12] == 0).all() and (diff[:6] > 0).all() and (diff[12:] > 0).all()


def test_tinyvit_style_per_head_qkv_indices():
    class TinyAttn(nn.Module):
        num_heads, key_dim, d = 2, 3, 4
        qkv = nn.Linear(8, 2 * (3 + 3 + 4))

    q, v = qv_output_indices(TinyAttn())
    assert q.tolist() == [0, 1, 2, 10, 11, 12]
    assert v.tolist() == [6, 7, 8, 9, 16, 17, 18, 19]
    assert qv_output_indices(nn.Module()) is None


@pytest.mark.parametrize("targets", [
    [torch.arange(0, 4), torch.arange(8, 12)],          # SAM ViT's fused qkv: q and v slices
    [torch.arange(0, 12)],                              # a decoder projection: every feature
    [torch.tensor([0, 1, 6, 7]), torch.tensor([4, 5, 10, 11])],  # TinyViT: per-head, scattered
])
def test_slices_and_index_add_give_the_same_output_and_gradients(targets):
    """Contiguous targets are added through a slice; bit for bit what index_add computes."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(6, 12), targets, rank=2, dropout=0.0)
    with torch.no_grad():
        for b in layer.lora_B:
            b.normal_()
    x = torch.randn(3, 5, 6, requires_grad=True)
    out = layer(x)
    expected = layer.base(x)
    for a, b, index in zip(layer.lora_A, layer.lora_B, targets):
        expected = expected.index_add(-1, index, (x @ a.t() @ b.t()) * layer.scale)
    assert torch.equal(out, expected)
    grads = torch.autograd.grad(out.square().sum(), [x, *layer.lora_A, *layer.lora_B])
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *layer.lora_A, *layer.lora_B])
    assert all(torch.equal(g, e) for g, e in zip(grads, expected_grads))
