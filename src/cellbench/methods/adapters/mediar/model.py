"""The MEDIAR-Former network: an MA-Net decoder on a MiT (SegFormer) encoder, two output heads.

Built from segmentation-models-pytorch's ``MAnet`` (which takes the ``mit_b0`` ...
``mit_b5`` encoders): its encoder and decoder are kept, its segmentation head
is dropped, every ReLU of encoder and decoder becomes a Mish, and two heads
read the decoder's full-resolution features:

* a cell-probability head (1 channel, logits), and
* a gradient-flow head (2 channels, the Cellpose flows ``(dy, dx)`` times 5).

Each head is conv 3x3 (C -> C/2), Mish, batch norm, conv 3x3 (C/2 -> out). The
output is ``[dy, dx, cellprob]`` per pixel, the channel order of MEDIAR.

The attribute names (``encoder``, ``decoder``, ``cellprob_head``,
``gradflow_head``) and the heads' layer order are those of MEDIAR's model, so
a state dict saved here has MEDIAR's key layout, and MEDIAR's released
weights (``mit_b5`` with the published decoder) map onto this module key by
key when smp's MiT and MA-Net modules name their parameters as they did when
MEDIAR was written (checked by :func:`load_mediar_state`, which refuses what
does not fit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cellbench.errors import DataError
from cellbench.methods import torch_file

__all__ = ["ENCODERS", "build_mediarformer", "load_mediar_state", "read_state_dict"]

#: MiT encoders smp provides (SegFormer's B0 ... B5); MEDIAR published mit_b5.
ENCODERS = ("mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5")


def _deep_head(in_channels: int, out_channels: int) -> Any:
    """MEDIAR's output head: conv 3x3 to half width, Mish, batch norm, conv 3x3 to ``out_channels``."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels // 2, kernel_size=3, padding=1),
        nn.Mish(inplace=True),
        nn.BatchNorm2d(in_channels // 2),
        nn.Conv2d(in_channels // 2, out_channels, kernel_size=3, padding=1),
    )


def _relu_to_mish(module: Any) -> None:
    """Replace every ``nn.ReLU`` below ``module`` by ``nn.Mish`` (MEDIAR's activation)."""
    from torch import nn

    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Mish(inplace=True))
        else:
            _relu_to_mish(child)


def build_mediarformer(
    *,
    encoder: str = "mit_b5",
    decoder_channels: Sequence[int] = (1024, 512, 256, 128, 64),
    decoder_pab_channels: int = 256,
    in_channels: int = 3,
) -> Any:
    """A randomly initialised MEDIAR-Former (a ``torch.nn.Module``); forward gives B x 3 x H x W.

    H and W must be multiples of 32 (the MiT encoder's output stride).
    """
    import segmentation_models_pytorch as smp
    import torch
    from torch import nn

    if encoder not in ENCODERS:
        raise DataError(f"mediar: encoder must be one of {list(ENCODERS)}, got {encoder!r}")

    class MediarFormer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            manet = smp.MAnet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=3,
                              decoder_channels=tuple(decoder_channels), decoder_pab_channels=decoder_pab_channels)
            self.encoder = manet.encoder
            self.decoder = manet.decoder
            _relu_to_mish(self.encoder)
            _relu_to_mish(self.decoder)
            self.cellprob_head = _deep_head(decoder_channels[-1], 1)
            self.gradflow_head = _deep_head(decoder_channels[-1], 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            if h % 32 or w % 32:
                raise ValueError(f"MEDIAR-Former input sides must be multiples of 32, got {h} x {w}")
            features = self.decoder(self.encoder(x))
            return torch.cat([self.gradflow_head(features), self.cellprob_head(features)], dim=1)

    return MediarFormer()


def read_state_dict(path: str | Path) -> dict:
    """A MEDIAR state dict read safely, unwrapped from a training checkpoint; DataError naming the file otherwise."""
    return torch_file.read_state_dict(path, what="MEDIAR weights file", wrappers=("model_state_dict",))


def load_mediar_state(net: Any, state: Mapping[str, Any], *, path: str | Path | None = None) -> None:
    """Load ``state`` into ``net`` exactly: every key present, every shape equal, else a DataError.

    ``module.`` prefixes (weights saved from ``DataParallel``) are removed first.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong)):
            if keys:
                parts.append(f"{label}: {len(keys)} key(s), e.g. {keys[:3]}")
        raise DataError("weights do not fit this MEDIAR-Former (check encoder and decoder_channels): "
                        + "; ".join(parts), path=path)
    net.load_state_dict(state, strict=True)
