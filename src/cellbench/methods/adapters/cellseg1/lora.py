"""LoRA on the query and value projections of SAM's attention layers.

CellSeg1 freezes every SAM weight and learns rank-4 updates ``B @ A`` (dropout
0.1 on the input) of the q and v projections in the image-encoder attention
blocks and in the mask decoder's two-way transformer (self-attention, both
cross-attentions and the final attention). ``B`` starts at zero, so a freshly
wrapped model computes exactly what the frozen SAM did.

The encoder attention of SAM ViT (and of TinyViT) computes q, k and v with one
fused ``qkv`` linear layer; :class:`LoRALinear` then adds its updates only to
the output features that are q and v. The strategy is passed as an object
(:class:`LoRA`), as micro-sam passes its PEFT class, so another strategy can
be dropped in without touching training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LoRA", "LoRALinear", "lora_state_dict", "qv_output_indices"]


class LoRALinear(nn.Module):
    """A frozen linear layer plus low-rank updates on chosen output features.

    ``targets`` are index tensors into the output features; each gets its own
    ``A`` (rank x in) and ``B`` (len(index) x rank) pair.

    >>> base = nn.Linear(4, 6)
    >>> layer = LoRALinear(base, [torch.arange(0, 2), torch.arange(4, 6)], rank=2, dropout=0.0)
    >>> x = torch.randn(3, 4)
    >>> bool(torch.equal(layer(x), base(x)))  # B starts at zero
    True
    """

    def __init__(self, base: nn.Linear, targets: list[torch.Tensor], *, rank: int, dropout: float, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        #: Per target, its (start, stop) when the index is a contiguous run of output features (SAM ViT's q and
        #: v, the decoder's whole projections): added through a slice, not index_add (measured ~15 % of a
        #: ViT-B training step, benchmarks/cellseg1_vs_reference.py); None for scattered ones (TinyViT's heads),
        #: whose index is the buffer ``index_<k>``.
        self._runs: list[tuple[int, int] | None] = []
        for k, index in enumerate(targets):
            index = index.long()
            first = int(index[0]) if len(index) else 0
            if len(index) > 0 and torch.equal(index, torch.arange(first, first + len(index))):
                self._runs.append((first, first + len(index)))
            else:
                self._runs.append(None)
                self.register_buffer(f"index_{k}", index, persistent=False)
            a = torch.empty(rank, base.in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A.append(nn.Parameter(a))
            self.lora_B.append(nn.Parameter(torch.zeros(len(index), rank)))

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:  # some callers read .weight.dtype / .device
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        h = self.dropout(x)
        for k, (a, b) in enumerate(zip(self.lora_A, self.lora_B)):
            delta = (h @ a.t() @ b.t()) * self.scale
            run = self._runs[k]
            if run is None:
                out = out.index_add(-1, getattr(self, f"index_{k}"), delta)
            elif run == (0, out.shape[-1]):
                out = out + delta
            else:  # in place on the frozen layer's output, which autograd does not keep for its backward
                out[..., run[0] : run[1]] += delta
        return out


def qv_output_indices(attn: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The q and v output features of a fused ``qkv`` layer, for the attention types SAM backbones use.

    SAM ViT: ``qkv`` is ``[q | k | v]`` of ``dim`` each. TinyViT (LiteMedSAM):
    per head ``[q (key_dim) | k (key_dim) | v (d)]``. None for anything else.
    """
    qkv = getattr(attn, "qkv", None)
    if not isinstance(qkv, nn.Linear):
        return None
    if hasattr(attn, "key_dim") and hasattr(attn, "d"):  # TinyViT
        per_head = 2 * attn.key_dim + attn.d
        starts = torch.arange(attn.num_heads) * per_head
        q = (starts[:, None] + torch.arange(attn.key_dim)).reshape(-1)
        v = (starts[:, None] + 2 * attn.key_dim + torch.arange(attn.d)).reshape(-1)
        return q, v
    dim = qkv.out_features // 3
    if qkv.out_features != 3 * dim:
        return None
    return torch.arange(0, dim), torch.arange(2 * dim, 3 * dim)


@dataclass(frozen=True)
class LoRA:
    """The CellSeg1 PEFT strategy: freeze the model, add LoRA to q and v of the chosen parts.

    Attributes:
        rank: LoRA rank (4 in the paper).
        dropout: dropout on the LoRA input (0.1 in the paper).
        alpha: scale numerator (update scaled by ``alpha / rank``); None means 1.
        parts: which submodules get LoRA: ``image_encoder`` and/or ``mask_decoder``.
    """

    rank: int = 4
    dropout: float = 0.1
    alpha: float | None = None
    parts: tuple[str, ...] = ("image_encoder", "mask_decoder")

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        unknown = set(self.parts) - {"image_encoder", "mask_decoder"}
        if unknown:
            raise ValueError(f"unknown LoRA parts {sorted(unknown)}; choose image_encoder, mask_decoder")

    def apply(self, model: nn.Module) -> list[str]:
        """Freeze ``model`` and wrap its q / v projections in place; returns the wrapped layer names."""
        for p in model.parameters():
            p.requires_grad_(False)
        wrapped = []
        kw = {"rank": self.rank, "dropout": self.dropout, "alpha": self.alpha}
        for part in self.parts:
            root = getattr(model, part)
            for name, module in list(root.named_modules()):
                if isinstance(module, LoRALinear):
                    continue
                q_proj, v_proj = getattr(module, "q_proj", None), getattr(module, "v_proj", None)
                if isinstance(q_proj, nn.Linear) and isinstance(v_proj, nn.Linear):  # decoder attention
                    module.q_proj = LoRALinear(q_proj, [torch.arange(q_proj.out_features)], **kw)
                    module.v_proj = LoRALinear(v_proj, [torch.arange(v_proj.out_features)], **kw)
                    wrapped += [f"{part}.{name}.q_proj", f"{part}.{name}.v_proj"]
                    continue
                indices = qv_output_indices(module)
                if indices is not None:
                    module.qkv = LoRALinear(module.qkv, list(indices), **kw)
                    wrapped.append(f"{part}.{name}.qkv")
        if not wrapped:
            raise ValueError(f"found no attention layer to adapt in {self.parts}")
        return wrapped


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors of ``model`` (the LoRA weights after :meth:`LoRA.apply`), detached on CPU."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}
