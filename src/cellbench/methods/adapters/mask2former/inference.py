"""Prediction: Mask2Former's per-query masks and class scores turned into scored, possibly overlapping instances.

:func:`query_instances` is Mask2Former's instance inference (Cheng et al.
2022, ``instance_inference`` of its reference code, which Hugging Face's
``post_process_instance_segmentation`` follows): the class probabilities of
every query and class (the "no object" column dropped) are ranked together
and the best ``max_instances`` kept, so a query may stand for two classes; a
pair's mask is its query's mask probability above ``mask_threshold``, and its
score is the class probability times the mean mask probability inside the
mask. Nothing suppresses overlaps: two queries may claim the same pixels, as
two overlapping cells do. It is written here rather than called from Hugging
Face's image processor, which resizes every mask to 384 x 384 and back, does
not apply ``mask_threshold`` and paints the instances into one label image;
here the masks stay at the image's pixels and separate.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellbench.instances import Instance
from cellbench.methods.adapters.mask2former.network import pixel_values

__all__ = ["query_instances", "segment", "upsample_masks"]


def upsample_masks(mask_logits: torch.Tensor, input_size: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """Mask logits (Q x h x w, stride 4 of the padded network input) at the image's pixels (Q x H x W):
    bilinearly to the padded input, cut to the input's ``input_size`` (the padding dropped), then to ``shape``
    (the image before ``scale``), as Mask2Former's reference code does.

    >>> upsample_masks(torch.zeros(2, 8, 8), (30, 20), (15, 10)).shape
    torch.Size([2, 15, 10])
    """
    h, w = mask_logits.shape[-2:]
    x = F.interpolate(mask_logits[None], size=(4 * h, 4 * w), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    if tuple(x.shape[-2:]) != tuple(shape):
        x = F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)
    return x[0]


def query_instances(class_logits: torch.Tensor, mask_logits: torch.Tensor, *, score_threshold: float,
                    mask_threshold: float, max_instances: int, shape: tuple[int, int] | None = None,
                    input_size: tuple[int, int] | None = None) -> list[Instance]:
    """Scored instances from one image's queries, best score first (ties in query order).

    Args:
        class_logits: Q x (C + 1) class logits, the last column "no object".
        mask_logits: Q x h x w mask logits; at the image's pixels unless ``shape`` is given.
        score_threshold: pairs scoring below this are dropped.
        mask_threshold: mask probability a pixel needs.
        max_instances: the best this many (query, class) pairs are considered.
        shape, input_size: the image's height and width and the network input's before padding, when
            ``mask_logits`` are the network's (stride 4 of the padded input; :func:`upsample_masks`).

    Two queries whose masks overlap both come out:

    >>> masks = torch.full((3, 6, 6), -9.0); masks[0, :4, :4] = 9; masks[1, 2:, 2:] = 9
    >>> classes = torch.tensor([[3.0, -3.0], [2.0, -2.0], [-5.0, 5.0]])  # the third query: no object
    >>> found = query_instances(classes, masks, score_threshold=0.5, mask_threshold=0.5, max_instances=3)
    >>> [(i.bbox, i.area, round(i.score, 3)) for i in found]
    [((0, 0, 4, 4), 16, 0.997), ((2, 2, 6, 6), 16, 0.982)]
    """
    probs = class_logits.float().softmax(-1)[:, :-1]
    n_queries, n_classes = probs.shape
    k = min(max_instances, n_queries * n_classes)
    top, index = probs.flatten().topk(k, sorted=True)
    keep = top >= score_threshold  # a pair's score is at most its class probability
    top, index = top[keep], index[keep]
    queries, labels = index // n_classes, index % n_classes
    if not len(queries):
        return []
    chosen = mask_logits[queries].float()
    if shape is not None:
        chosen = upsample_masks(chosen, input_size or shape, shape)
    prob = chosen.sigmoid()
    found: list[tuple[float, int, Instance]] = []
    for j in range(len(queries)):
        binary = prob[j] > mask_threshold
        n = int(binary.sum())
        if n == 0:
            continue
        score = float(top[j]) * float(prob[j][binary].sum()) / n
        if score < score_threshold:
            continue
        inst = Instance.from_mask(binary.numpy(), class_id=int(labels[j]), score=score)
        found.append((score, j, inst))
    found.sort(key=lambda t: (-t[0], t[1]))
    return [inst for _, _, inst in found]


@torch.no_grad()
def segment(model: nn.Module, image: np.ndarray, *, scale: float, score_threshold: float, mask_threshold: float,
            max_instances: int) -> list[Instance]:
    """The instances of one H x W x 3 float image (preprocessed), best first; the model in eval mode."""
    model.eval()
    h, w = image.shape[:2]
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    x, input_size = pixel_values(x, scale)
    output = model(pixel_values=x)
    return query_instances(output.class_queries_logits[0].cpu(), output.masks_queries_logits[0].cpu(),
                           score_threshold=score_threshold, mask_threshold=mask_threshold,
                           max_instances=max_instances, shape=(h, w), input_size=input_size)
