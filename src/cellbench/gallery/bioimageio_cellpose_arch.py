"""The network of a cellbench Cellpose bioimage.io package: Cellpose 3's U-Net at the model's scale.

This file is shipped inside the package as the architecture of its
``pytorch_state_dict`` weights, so it imports only torch and cellpose (3.x).
:class:`CellposeFlows` maps a normalised image (batch x C x H x W, C = 1
for grayscale or 2) to Cellpose's three output maps at the same size: the
flows dy, dx and the cell-probability logit, which the
``cellpose_flow_dynamics`` postprocessing turns into instance labels.
Inside: the grayscale image gets Cellpose's zero second channel, the image
is resized by ``rescale`` (Cellpose's ``diam_mean / diameter``) and padded
to a multiple of 16, the U-Net runs, and its output is cropped and resized
back. The forward pass is TorchScript-compatible (the exporter scripts it
around a traced U-Net).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CellposeFlows"]


class _GlobalStyle(nn.Module):
    """Cellpose's style vector (spatial mean, L2-normalised), written so that tracing keeps the size dynamic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        style = x.mean(dim=(2, 3))
        return style / torch.sum(style**2, dim=1, keepdim=True) ** 0.5


class _UNet(nn.Module):
    """The Cellpose 3 network, returning only its 3-channel output map."""

    def __init__(self, diam_mean: float) -> None:
        super().__init__()
        from cellpose.resnet_torch import CPnet

        self.net = CPnet([2, 32, 64, 128, 256], 3, 3, mkldnn=False, diam_mean=diam_mean)
        self.net.make_style = _GlobalStyle()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


class CellposeFlows(nn.Module):
    """Flows and cell probability of a Cellpose 3 network, at the input's size (see the module docstring).

    ``load_state_dict`` of a Cellpose model file goes to ``.unet.net``; the
    state dict of this module is the Cellpose one under the ``unet.net.`` prefix.
    """

    __jit_unused_properties__ = ["net"]

    def __init__(self, diam_mean: float = 30.0, rescale: float = 1.0, in_channels: int = 1) -> None:
        super().__init__()
        self.unet = _UNet(diam_mean)
        self.rescale = float(rescale)
        self.in_channels = int(in_channels)

    @property
    def net(self) -> nn.Module:
        """The Cellpose ``CPnet`` inside (for loading a Cellpose state dict)."""
        return self.unet.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = torch.cat([x, torch.zeros_like(x)], dim=1)
        h, w = x.shape[2], x.shape[3]
        if self.rescale != 1.0:
            x = F.interpolate(x, size=(int(h * self.rescale), int(w * self.rescale)), mode="bilinear",
                              align_corners=False)
        sh, sw = x.shape[2], x.shape[3]
        ph, pw = (16 - sh % 16) % 16, (16 - sw % 16) % 16
        top, left = ph // 2, pw // 2
        x = F.pad(x, [left, pw - left, top, ph - top])
        y = self.unet(x)[:, :, top:top + sh, left:left + sw]
        if self.rescale != 1.0:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return y
