"""Matrix NMS (Wang et al., "SOLOv2: Dynamic and Fast Instance Segmentation", NeurIPS 2020, section 3.3).

Greedy mask NMS drops a mask that overlaps a better one and must be run one
mask at a time. Matrix NMS instead *decays* every mask's score, in one pass of
matrix operations, by how much it overlaps the masks that score higher than it:

* ``iou[i, j]``: the mask IoU of masks i and j, for i scoring above j and of
  the same class (0 otherwise);
* ``compensate[i]``: the largest IoU of mask i with a mask scoring above it,
  how much i is itself likely to be suppressed;
* ``decay[j] = min over i of f(iou[i, j]) / f(compensate[i])`` with
  ``f(x) = exp(-sigma x^2)`` (``kernel="gaussian"``) or ``f(x) = 1 - x``
  (``"linear"``); the best mask's decay is 1, a mask that duplicates a mask that
  nothing suppresses gets ``f(iou)``;
* the new score is ``score x decay``; masks whose new score falls under a
  threshold are dropped, the rest re-ranked.

As MMDetection's ``mask_matrix_nms`` (its SOLOv2 configs: gaussian, sigma 2,
the 500 best masks in, an update threshold 0.05). The paper writes the
gaussian kernel ``exp(-x^2 / sigma)``; the authors' and MMDetection's code
multiply by ``sigma`` (2.0), which is what ``sigma`` means here.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["matrix_nms"]


def matrix_nms(
    masks: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    *,
    kernel: Literal["gaussian", "linear"] = "gaussian",
    sigma: float = 2.0,
    pre: int = 0,
    keep: int = 0,
    update_threshold: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decayed scores and the indices (into the inputs) of the masks kept, best new score first.

    Args:
        masks: N x H x W binary masks (bool or 0 / 1).
        labels: N class ids; only masks of one class decay each other.
        scores: N scores.
        kernel, sigma: the decay function (see the module).
        pre: only the ``pre`` best-scored masks take part (0: all).
        keep: at most this many masks are returned (0: all).
        update_threshold: masks whose decayed score is below this are dropped.

    >>> a = torch.zeros(3, 1, 4, dtype=torch.bool); a[0, 0, :2] = a[1, 0, :3] = a[2, 0, 3] = True
    >>> new, kept = matrix_nms(a, torch.zeros(3), torch.tensor([0.9, 0.8, 0.7]))  # IoU(0, 1) = 2 / 3
    >>> kept.tolist(), [round(v, 4) for v in new.tolist()]  # 0.8 x exp(-2 x (2 / 3)^2) = 0.3289
    ([0, 2, 1], [0.9, 0.7, 0.3289])
    """
    if not len(masks) == len(labels) == len(scores):
        raise ValueError(f"masks, labels and scores differ in number: {len(masks)}, {len(labels)}, {len(scores)}")
    if kernel not in ("gaussian", "linear"):
        raise ValueError(f"kernel must be 'gaussian' or 'linear', got {kernel!r}")
    order = torch.argsort(scores, descending=True, stable=True)
    if pre > 0:
        order = order[:pre]
    n = len(order)
    if n == 0:
        return scores.new_zeros(0), order
    flat = masks[order].reshape(n, -1).float()
    inter = flat @ flat.T
    area = flat.sum(dim=1)
    union = area[:, None] + area[None, :] - inter
    # upper triangle: row i scores above column j
    iou = torch.where(union > 0, inter / union.clamp(min=1e-9), torch.zeros_like(inter)).triu(diagonal=1)
    same = labels[order][:, None] == labels[order][None, :]
    iou = iou * same
    compensate = iou.max(dim=0).values[:, None]  # per row i: its largest IoU with a better mask
    if kernel == "gaussian":
        decay = (torch.exp(-sigma * iou**2) / torch.exp(-sigma * compensate**2)).min(dim=0).values
    else:
        decay = ((1 - iou) / (1 - compensate).clamp(min=1e-9)).min(dim=0).values
    new = scores[order] * decay
    kept = new >= update_threshold
    new, order = new[kept], order[kept]
    rank = torch.argsort(new, descending=True, stable=True)
    if keep > 0:
        rank = rank[:keep]
    return new[rank], order[rank]
