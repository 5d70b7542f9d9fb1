"""One cell from one prompt: SAM's answer to a click (point) or a dragged box, for annotation.

The backbone is the one CellSeg1 trains (:func:`~cellbench.methods.adapters.cellseg1.backbones.load_backbone`:
LiteMedSAM by default, any registry backbone with its checkpoint). A window around
the prompt, about four times the prompt's size, is encoded at the backbone's input
size (so a nucleus is seen magnified, as LiteMedSAM saw organs), then the prompt is
decoded against it. LiteMedSAM learned boxes only (see the CellSeg1 section of the
README), so a click is shown to it as a square box of ``half_side`` pixels centred
on the click, as CellSeg1 does with its point prompts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import Instance

__all__ = ["PromptSegmenter", "prompt_box"]


def prompt_box(x0: float, y0: float, x1: float, y1: float, *, half_side: float) -> tuple[float, float, float, float]:
    """The box for a mouse gesture: the dragged rectangle, or a square around a click (a drag under 4 px).

    >>> prompt_box(10, 10, 11, 10, half_side=5)
    (5.5, 5.0, 15.5, 15.0)
    >>> prompt_box(30, 5, 10, 25, half_side=5)
    (10, 5, 30, 25)
    """
    if abs(x1 - x0) < 4 and abs(y1 - y0) < 4:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return (cx - half_side, cy - half_side, cx + half_side, cy + half_side)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


@dataclass
class PromptSegmenter:
    """SAM prompts on one backbone, loaded on first use and shared by every page of the server."""

    backbone_name: str = "litemedsam"
    checkpoint: str | None = None
    context: float = 4.0
    _backbone: object = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def backbone(self):
        with self._lock:
            if self._backbone is None:
                from cellbench.methods.adapters.cellseg1.backbones import load_backbone

                self._backbone = load_backbone(self.backbone_name, checkpoint=self.checkpoint)
            return self._backbone

    def segment(self, image: np.ndarray, box: tuple[float, float, float, float], *,
                class_id: int = 0) -> Instance | None:
        """The instance SAM proposes for ``box`` = ``(x0, y0, x1, y1)`` in image pixels (None when empty)."""
        import torch
        import torch.nn.functional as F

        from cellbench.methods.adapters.cellseg1.backbones import to_input
        from cellbench.methods.adapters.cellseg1.forward import encode
        from cellbench.methods.adapters.cellseg1.inference import to_uint8_rgb

        rgb = to_uint8_rgb(np.asarray(image))
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x1 > x0 and y1 > y0) or x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise DataError(f"prompt box {box} is empty or outside the {w} x {h} image")
        side = int(np.clip(round(self.context * max(x1 - x0, y1 - y0)), 64, 2048))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        wx, wy = int(round(cx - side / 2)), int(round(cy - side / 2))
        window = np.zeros((side, side, 3), np.uint8)  # zero padding where the window leaves the image
        sy0, sx0, sy1, sx1 = max(wy, 0), max(wx, 0), min(wy + side, h), min(wx + side, w)
        window[sy0 - wy:sy1 - wy, sx0 - wx:sx1 - wx] = rgb[sy0:sy1, sx0:sx1]
        backbone = self.backbone
        scale = backbone.input_size / side
        prompt = torch.tensor([[(x0 - wx) * scale, (y0 - wy) * scale, (x1 - wx) * scale, (y1 - wy) * scale]])
        model = backbone.model
        with self._lock, torch.no_grad():
            embedding = encode(backbone, to_input(window, backbone))
            sparse, dense = model.prompt_encoder(points=None, boxes=prompt, masks=None)
            logits, _ = model.mask_decoder(image_embeddings=embedding, image_pe=model.prompt_encoder.get_dense_pe(),
                                           sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                           multimask_output=False)
            full = F.interpolate(logits[:, :1], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
        mask = (full > 0).numpy()[sy0 - wy:sy1 - wy, sx0 - wx:sx1 - wx]
        mask = _component_at(mask, (cy - sy0, cx - sx0))
        if not mask.any():
            return None
        return Instance.from_mask(mask, offset=(sy0, sx0), class_id=class_id)


def _component_at(mask: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """The connected part of ``mask`` under ``centre``, else its largest part (SAM may add specks)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    r = int(np.clip(round(centre[0]), 0, mask.shape[0] - 1))
    c = int(np.clip(round(centre[1]), 0, mask.shape[1] - 1))
    keep = labels[r, c] or int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    return labels == keep
