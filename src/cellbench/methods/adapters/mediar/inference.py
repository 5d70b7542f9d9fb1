"""MEDIAR's prediction: overlapping windows blended with a Gaussian importance map, flips, flows to masks.

* :func:`sliding_window` runs the network on ``roi`` x ``roi`` windows placed
  every ``roi * (1 - overlap)`` pixels (the last flush with the edge; an image
  smaller than a window is zero-padded around), and averages the raw outputs
  where windows overlap, each weighted by a Gaussian of sigma ``roi / 8``
  centred on its window: MONAI's ``sliding_window_inference`` with
  ``mode="gaussian"``, which MEDIAR calls with roi 512 and overlap 0.6.
* :func:`predict_maps` adds MEDIAR's test-time augmentation: the image flipped
  left-right and up-down, the outputs flipped back (the flow component along
  the flipped axis negated) and the three averaged.
* :func:`masks_from_maps` turns the maps into cells: the cell probability
  thresholded (0.5), holes and specks under 16 px removed, then Cellpose's
  dynamics (``cellpose.dynamics.compute_masks``: follow the flows, group
  pixels that converge, drop masks whose flows disagree with their shape).

Why not cellbench's instance tiling (:mod:`cellbench.methods.tiling`): MEDIAR
blends the network outputs (flows and probabilities) of overlapping windows
before any cell exists, and follows the flows once on the whole image, so a
cell crossing a window border is never cut or stitched. That is a different
idea from stitching instances found per tile, so the method tiles inside
``predict`` and its model directories record ``TileConfig(tile=0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["gaussian_importance", "masks_from_maps", "predict_maps", "sliding_window", "window_starts"]

SMALL = 16  # px: MEDIAR removes holes and objects below this size in the thresholded probability


def window_starts(length: int, roi: int, overlap: float) -> list[int]:
    """Window starts along one axis of ``length`` (already padded to at least ``roi``).

    >>> window_starts(512, 256, 0.6)
    [0, 102, 204, 256]
    >>> window_starts(256, 256, 0.6)
    [0]
    """
    step = max(1, int(roi * (1.0 - overlap)))
    n = int(np.ceil(max(length - roi, 0) / step)) + 1
    return sorted({min(i * step, length - roi) for i in range(n)})


def gaussian_importance(roi: int, sigma_scale: float = 0.125) -> np.ndarray:
    """``roi`` x ``roi`` weights: a Gaussian of sigma ``sigma_scale * roi`` with peak 1, floored above 0."""
    centre = (roi - 1) / 2.0
    g = np.exp(-0.5 * ((np.arange(roi) - centre) / (sigma_scale * roi)) ** 2)
    w = np.outer(g, g)
    w /= w.max()
    return np.maximum(w, w[w > 0].min()).astype(np.float32)


def sliding_window(run: Callable[[Any], Any], image: np.ndarray, *, roi: int, overlap: float,
                   batch: int = 4) -> np.ndarray:
    """Blend ``run`` (B x C x roi x roi tensor -> B x K x roi x roi tensor) over a C x H x W image -> K x H x W."""
    import torch

    c, h, w = image.shape
    ph, pw = max(0, roi - h), max(0, roi - w)
    padded = np.pad(image, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    H, W = padded.shape[1:]
    corners = [(y, x) for y in window_starts(H, roi, overlap) for x in window_starts(W, roi, overlap)]
    weight = torch.from_numpy(gaussian_importance(roi))
    total: torch.Tensor | None = None
    norm = torch.zeros((H, W))
    tensor = torch.from_numpy(np.ascontiguousarray(padded))
    for k in range(0, len(corners), batch):
        chunk = corners[k:k + batch]
        out = run(torch.stack([tensor[:, y:y + roi, x:x + roi] for y, x in chunk])).float().cpu()
        if total is None:
            total = torch.zeros((out.shape[1], H, W))
        for (y, x), o in zip(chunk, out):
            total[:, y:y + roi, x:x + roi] += o * weight
            norm[y:y + roi, x:x + roi] += weight
    result = (total / norm).numpy()
    return result[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]


def predict_maps(net: Any, image: np.ndarray, *, roi: int, overlap: float, tta: bool,
                 batch: int = 4) -> np.ndarray:
    """Network maps ``[dy, dx, cellprob logit]`` (3 x H x W) of a C x H x W image, optionally with flip TTA."""
    import torch

    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x)

    with torch.no_grad():
        maps = sliding_window(run, image, roi=roi, overlap=overlap, batch=batch)
        if not tta:
            return maps
        lr = sliding_window(run, image[:, :, ::-1].copy(), roi=roi, overlap=overlap, batch=batch)[:, :, ::-1]
        ud = sliding_window(run, image[:, ::-1, :].copy(), roi=roi, overlap=overlap, batch=batch)[:, ::-1, :]
    sign_lr = np.array([1.0, -1.0, 1.0], np.float32)[:, None, None]  # a left-right flip reverses dx
    sign_ud = np.array([-1.0, 1.0, 1.0], np.float32)[:, None, None]  # an up-down flip reverses dy
    return ((maps + sign_lr * lr + sign_ud * ud) / 3.0).astype(np.float32)


def _drop_small(mask: np.ndarray, size: int) -> np.ndarray:
    """``mask`` without its 4-connected components smaller than ``size`` pixels."""
    labels, _ = ndimage.label(mask)
    keep = np.bincount(labels.ravel()) >= size
    keep[0] = False
    return keep[labels]


def masks_from_maps(maps: np.ndarray, *, prob_threshold: float = 0.5, flow_threshold: float = 0.4,
                    niter: int = 200, min_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label image (H x W int32) and cell probability (H x W) from ``[dy, dx, cellprob logit]`` maps."""
    import torch
    from cellpose import dynamics

    flows = np.ascontiguousarray(maps[:2], dtype=np.float32)
    prob = 1.0 / (1.0 + np.exp(-maps[2].astype(np.float64)))
    cells = ~_drop_small(~(prob > prob_threshold), SMALL)  # fill small holes
    cells = _drop_small(cells, SMALL)
    if not cells.any():
        return np.zeros(prob.shape, np.int32), prob
    # compute_masks thresholds its cellprob argument; the cleaned mask is passed as +1 / -1 around 0
    masks = dynamics.compute_masks(flows, np.where(cells, 1.0, -1.0).astype(np.float32), niter=niter,
                                   cellprob_threshold=0.0, flow_threshold=flow_threshold,
                                   min_size=min_size if min_size > 0 else -1, device=torch.device("cpu"))
    return np.asarray(masks).astype(np.int32), prob
