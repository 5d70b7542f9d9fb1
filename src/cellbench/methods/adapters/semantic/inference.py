"""From an image to the network's output maps: three input channels, normalisation, sliding windows.

Both references feed three channels (a grey image repeated, a fourth channel
dropped), each normalised between its 1st and 99th percentile and clipped,
and run MONAI's ``sliding_window_inference`` with windows of the training
patch size, 25 % overlap, reflect padding. saltfish also averages the logits
over input scales 1, 1.25 and 1.5 (``scales``); the output of each scale is
resized back to the image before averaging, as they do.

The whole image is predicted at once (windows inside), so the
post-processing sees one probability map and no cell is cut by a tile
border: the methods' ``default_tiling`` is ``TileConfig(tile=0)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cellbench.errors import DataError
from cellbench.methods.preprocess import PreprocessConfig, preprocess

__all__ = ["InferenceSettings", "SemanticPreprocess", "network_input", "predict_maps"]


@dataclass(frozen=True)
class SemanticPreprocess(PreprocessConfig):
    """Percentile normalisation between the 1st and 99th percentile (both reference scripts), clipped to [0, 1]."""

    low: float = 1.0
    high: float = 99.0


@dataclass(frozen=True)
class InferenceSettings:
    """MONAI ``sliding_window_inference`` settings and test-time scales.

    Attributes:
        overlap: fraction of a window shared with its neighbour (MONAI default 0.25).
        blend: how overlapping windows are averaged (``constant`` or ``gaussian``).
        window_batch: windows per forward pass (``sw_batch_size``; 4 in both references).
        scales: input scales whose logits are averaged (saltfish: 1, 1.25, 1.5).
    """

    overlap: float = 0.25
    blend: Literal["constant", "gaussian"] = "constant"
    window_batch: int = 4
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap}")
        if self.blend not in ("constant", "gaussian"):
            raise ValueError(f"blend must be 'constant' or 'gaussian', got {self.blend!r}")
        if self.window_batch < 1 or not self.scales or min(self.scales) <= 0:
            raise ValueError(f"need window_batch >= 1 and positive scales, got {self.window_batch}, {self.scales}")


def network_input(image: np.ndarray, prep: PreprocessConfig) -> np.ndarray:
    """H x W x 3 float32: grey repeated to three channels (a fourth and later dropped), normalised per channel.

    >>> network_input(np.arange(12, dtype=np.uint8).reshape(3, 4), SemanticPreprocess()).shape
    (3, 4, 3)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] < 1:
        raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
    image = image[..., :3]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] == 2:  # two channels (e.g. TissueNet nuclear + whole cell): a blank third
        image = np.concatenate([image, np.zeros_like(image[..., :1])], axis=-1)
    out = preprocess(image, prep)
    return np.clip(out, 0.0, 1.0) if prep.normalize == "percentile" else out


def predict_maps(network: Any, image: np.ndarray, *, roi: int, settings: InferenceSettings) -> np.ndarray:
    """The network's output channels (C x H x W float32, logits as the network gives them) for a prepared image."""
    import torch
    import torch.nn.functional as F
    from monai.inferers import sliding_window_inference

    device = next(network.parameters()).device
    h, w = image.shape[:2]
    # torch's reflect padding (MONAI's, to the window size) needs a pad shorter than the image: pad small images
    # here (NumPy reflects as often as needed) and cut the maps back
    least = int(np.ceil(roi / min(1.0, min(settings.scales))))
    pad_h, pad_w = max(0, least - h), max(0, least - w)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))[None].float().to(device)
    ph, pw = x.shape[-2:]
    total = None
    network.eval()
    with torch.no_grad():
        for scale in settings.scales:
            xs = x if scale == 1 else F.interpolate(x, (round(scale * ph), round(scale * pw)), mode="bilinear",
                                                    align_corners=True)
            out = sliding_window_inference(xs, (roi, roi), settings.window_batch, network,
                                           overlap=settings.overlap, mode=settings.blend, padding_mode="reflect")
            if scale != 1:
                out = F.interpolate(out, (ph, pw), mode="bilinear", align_corners=True)
            total = out if total is None else total + out
    return (total / len(settings.scales))[0, :, :h, :w].cpu().numpy().astype(np.float32)
