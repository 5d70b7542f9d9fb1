"""CellSeg1 inference on one tile: point grid, batched decoding, scores, thresholds, NMS, cleanup.

The image embedding is computed once per tile; the grid points are decoded
in batches against it. Each mask is scored by predicted IoU (read as cell
probability) times its stability score, filtered by both thresholds, cleaned
of small islands and holes, bounded in area, and the survivors go through the
two-stage mask NMS. :func:`predict_image_grid` runs a whole image: normalised
once, cut into tiles so every tile is seen at the scale the model was trained
at, stitched. It is the one grid + NMS path of cellbench: CellSeg1 runs it with
its LoRA weights, the zero-shot ``sam`` method (:mod:`cellbench.methods.adapters.sam`)
with the plain SAM backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.instances.flatten import PriorityFlatten, flatten
from cellbench.methods.adapters.cellseg1.backbones import Backbone, to_input
from cellbench.methods.adapters.cellseg1.forward import decode_points, encode
from cellbench.methods.adapters.cellseg1.nms import two_stage_mask_nms
from cellbench.methods.tiling import TileConfig, predict_tiled

__all__ = ["InferenceConfig", "point_grid", "predict_image_grid", "predict_tile", "stability_score", "to_uint8_rgb"]


@dataclass(frozen=True)
class InferenceConfig:
    """Inference settings for one tile (the ``inference`` section of a CellSeg1 config); defaults are the paper's."""

    points_per_side: int = 32
    points_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_thresh: float = 0.6
    stability_offset: float = 0.8
    mask_threshold: float = 0.0
    nms_iou: float = 0.05
    min_area: int = 20
    max_area_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("points_per_side", "points_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CellSeg1 inference.{name} must be >= 1, got {getattr(self, name)!r}")


def point_grid(points_per_side: int) -> np.ndarray:
    """``n * n`` points ``(x, y)`` in [0, 1], centred in their cells (SAM's grid).

    >>> point_grid(2).tolist()
    [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    """
    offset = 1.0 / (2 * points_per_side)
    side = np.linspace(offset, 1 - offset, points_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def stability_score(logits: torch.Tensor, *, threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """IoU of the mask thresholded at ``threshold + offset`` and at ``threshold - offset`` (SAM's score).

    >>> float(stability_score(torch.tensor([[[2.0, 0.5, -2.0]]]), offset=1.0)[0])
    0.5
    """
    inter = (logits > threshold + offset).flatten(1).sum(-1).float()
    union = (logits > threshold - offset).flatten(1).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Any H x W (x C) image as H x W x 3 uint8, min-max normalised over the whole image (as the paper).

    >>> to_uint8_rgb(np.array([[0, 500], [1000, 250]], np.uint16))[..., 0].tolist()
    [[0, 128], [255, 64]]
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"image must be H x W or H x W x C, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 2:
        img = np.concatenate([img, np.zeros_like(img[..., :1])], axis=2)
    img = img[..., :3].astype(np.float64)
    lo, hi = float(img.min()), float(img.max())
    scaled = (img - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(img)
    return np.rint(scaled).astype(np.uint8)


def _clean(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop islands and fill holes smaller than ``min_area`` pixels (SAM's small-region cleanup).

    Labels only the mask's bounding box grown by one pixel, not the whole
    tile; the result is that of :func:`_clean_full`. Islands all lie inside
    the box. A background region not touching a side of the box with more
    tile beyond it is a whole region of the tile; one touching such a side may
    continue outside, so when it has under ``min_area`` pixels inside the box
    (a mask under about 4 x 4 pixels) the whole tile is labelled instead.

    >>> m = np.zeros((6, 6), bool); m[1:5, 1:5] = True; m[2, 2] = False; m[0, 5] = True
    >>> int(_clean(m, 2).sum())
    16
    """
    if min_area <= 0:
        return mask
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return _clean_full(mask, min_area)
    box = (
        slice(max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])),
        slice(max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])),
    )
    crop = mask[box]
    out = mask.copy()
    fill = out[box]  # a view: writes land in out
    for region, value in ((crop, False), (~crop, True)):
        labels, n = ndimage.label(region)
        if not n:
            continue
        small = np.bincount(labels.ravel(), minlength=n + 1) < min_area
        small[0] = False
        if value:  # background: regions on a box side with more tile beyond it may continue outside
            sides = ((labels[0], box[0].start > 0), (labels[-1], box[0].stop < mask.shape[0]),
                     (labels[:, 0], box[1].start > 0), (labels[:, -1], box[1].stop < mask.shape[1]))
            edge = [side for side, more_tile in sides if more_tile]
            if edge and small[np.concatenate(edge)].any():
                return _clean_full(mask, min_area)
        fill[small[labels]] = value
    return out


def _clean_full(mask: np.ndarray, min_area: int) -> np.ndarray:
    """:func:`_clean` labelling the whole tile (the reference it must equal).

    >>> m = np.zeros((6, 6), bool); m[1:5, 1:5] = True; m[2, 2] = False; m[0, 5] = True
    >>> int(_clean_full(m, 2).sum())
    16
    """
    if min_area <= 0:
        return mask
    out = mask.copy()
    for region, value in ((mask, False), (~mask, True)):
        labels, n = ndimage.label(region)
        if n:
            small = np.flatnonzero(np.bincount(labels.ravel())[1:] < min_area) + 1
            if small.size:
                out[np.isin(labels, small)] = value
    return out


@torch.no_grad()
def predict_tile(
    backbone: Backbone,
    tile: np.ndarray,
    *,
    side: int | None = None,
    config: InferenceConfig = InferenceConfig(),
    progress: Callable | None = None,
    box_half_side: float | None = None,
) -> InstanceSet:
    """Instances in one uint8 H x W x 3 tile, scored, thresholded and NMS-filtered (they may overlap).

    The tile is padded (bottom / right, with zeros) to a ``side`` x ``side``
    square (default: its longer side) and resized to the backbone's input, so
    tiles of one image share one scale; grid points in the padding are skipped.
    ``box_half_side`` (input-frame pixels) prompts each grid point as a box
    centred on it, as the model was trained.
    """
    h, w = tile.shape[:2]
    side = max(h, w) if side is None else side
    if side < max(h, w):
        raise ValueError(f"tile {tile.shape[:2]} is larger than side {side}")
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[:h, :w] = tile
    device = next(backbone.model.parameters()).device
    embedding = encode(backbone, to_input(square, backbone).to(device))

    grid = point_grid(config.points_per_side) * side
    grid = grid[(grid[:, 0] < w) & (grid[:, 1] < h)]
    to_input_frame = backbone.input_size / side
    max_area = config.max_area_fraction * h * w

    masks, boxes, scores = [], [], []
    batches = range(0, len(grid), config.points_batch)
    for start in progress(batches, desc="points", leave=False) if progress else batches:
        pts = torch.from_numpy(grid[start : start + config.points_batch] * to_input_frame).to(device)
        logits, iou = decode_points(backbone, embedding, pts, box_half_side=box_half_side)
        keep = iou >= config.pred_iou_thresh
        if not keep.any():
            continue
        logits, iou = logits[keep], iou[keep]
        logits = F.interpolate(logits[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0, :h, :w]
        stab = stability_score(logits, threshold=config.mask_threshold, offset=config.stability_offset)
        keep = stab >= config.stability_thresh
        binary = (logits[keep] > config.mask_threshold).cpu().numpy()
        for mask, score in zip(binary, (iou[keep] * stab[keep]).cpu().numpy()):
            mask = _clean(mask, config.min_area)
            area = int(np.count_nonzero(mask))
            if area < max(config.min_area, 1) or area > max_area:
                continue
            inst = Instance.from_mask(mask, score=float(score))
            masks.append(inst.mask)
            boxes.append(inst.bbox)
            scores.append(inst.score)
    if not masks:
        return InstanceSet(shape=(h, w))
    kept = two_stage_mask_nms(masks, np.array(boxes), np.array(scores), iou_threshold=config.nms_iou)
    instances = tuple(Instance(mask=masks[k], bbox=boxes[k], score=scores[k]) for k in kept)
    return InstanceSet(shape=(h, w), instances=instances)


def predict_image_grid(
    backbone: Backbone,
    image: np.ndarray,
    *,
    tiling: TileConfig,
    config: InferenceConfig = InferenceConfig(),
    box_half_side: float | None = None,
    keep_overlaps: bool = True,
    progress: Callable | None = None,
    tile_predictor: Callable[..., InstanceSet] | None = None,
) -> InstanceSet:
    """Instances of a whole image by the point grid: tiles of ``tiling.tile`` px, each by :func:`predict_tile`.

    The image is normalised once over its whole extent (:func:`to_uint8_rgb`),
    not per tile. ``box_half_side`` (image pixels) prompts each point as a box
    of that half side (None: point prompts). Overlapping instances are kept,
    or with ``keep_overlaps=False`` flattened so the higher-scoring instance
    wins shared pixels. ``tile_predictor`` replaces :func:`predict_tile` (same signature).
    """
    tile_predictor = tile_predictor or predict_tile
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
    if tiling.tile < 1:
        raise DataError(f"the point grid runs per tile: tiling.tile must be at least 1 px, got {tiling.tile}")
    rgb = to_uint8_rgb(image)
    half = None if box_half_side is None else box_half_side * backbone.input_size / tiling.tile

    def one_tile(tile: np.ndarray) -> InstanceSet:
        return tile_predictor(backbone, tile, side=tiling.tile, config=config, progress=progress,
                              box_half_side=half)

    found = one_tile(rgb) if max(rgb.shape[:2]) <= tiling.tile else predict_tiled(one_tile, rgb, tiling,
                                                                                  progress=progress)
    if keep_overlaps or len(found) == 0:
        return found
    order = np.argsort(-found.scores, kind="stable")
    ranked = found.replace(instances=tuple(found[int(k)] for k in order))
    return flatten(ranked, PriorityFlatten("first")).to_instance_set()
