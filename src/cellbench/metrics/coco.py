"""COCO mask metrics (mAP@[.50:.05:.95], AP50, AP75, AR50, AR75), equal to pycocotools.

This is pycocotools' ``COCOeval`` for ``iouType="segm"`` and the area range
``all``, rewritten on cellbench's sparse overlaps: per image and category the
detections are ranked by score (stable) and cut at ``max_dets``; at each of the
ten IoU thresholds each detection in turn takes the still unmatched ground
truth with the highest IoU >= t (ties: the later one, as pycocotools); then per
category all images' detections are ranked together and precision is
interpolated at 101 recall points. Every floating-point step is the one of
pycocotools, so the numbers are equal, not just close (the tests read
pycocotools' ``precision`` and ``recall`` arrays).

Differences on purpose: the summary figures are taken at ``max_dets`` (3000 by
default, as the 18-methods benchmark), whereas ``COCOeval.summarize()``
computes its first figure, mAP, at 100 detections whatever ``params.maxDets``
says (faster-coco-eval uses the largest maxDets, so the two disagree on images
with more than 100 cells). Crowd annotations are not supported: cellbench's
readers skip them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cellbench.errors import DataError
from cellbench.matching import Overlaps
from cellbench.metrics.base import ImagePair, Metric, category_names

__all__ = ["COCO_IOU_THRESHOLDS", "CocoImage", "CocoMetric", "CocoParts", "CocoResult", "coco_image", "coco_summary"]

#: Exactly pycocotools' ``Params.iouThrs`` and ``Params.recThrs``.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


@dataclass(frozen=True)
class CocoImage:
    """One image and category after greedy matching: what ``COCOeval.evaluateImg`` keeps."""

    scores: np.ndarray  # detection scores, ranked, at most max_dets
    matched: np.ndarray  # bool (n_thresholds, n_detections)
    n_gt: int


def coco_image(ov: Overlaps, scores: np.ndarray, *, max_dets: int = 3000) -> CocoImage:
    """Greedy score-ordered matching of one image and category at the ten COCO thresholds.

    ``ov`` relates the image's GT and detections of one category; ``scores``
    holds one score per detection in ``ov``'s detection order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")[:max_dets]
    rank = np.full(ov.n_pred, -1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    n_det = order.size
    matched = np.zeros((COCO_IOU_THRESHOLDS.size, n_det), dtype=bool)
    iou = ov.iou
    d_rank = rank[ov.pred_index]
    live = d_rank >= 0
    d_rank, g_idx, iou = d_rank[live], ov.gt_index[live], iou[live]
    for k, t in enumerate(COCO_IOU_THRESHOLDS):
        hit = iou >= min(t, 1 - 1e-10)
        d, g = d_rank[hit], g_idx[hit]
        if d.size == 0:
            continue
        if np.bincount(d).max() <= 1 and np.bincount(g).max() <= 1:
            matched[k, d] = True
            continue
        matched[k] = _greedy(d, g, iou[hit], n_det, ov.n_gt, t)
    return CocoImage(scores=scores[order], matched=matched, n_gt=ov.n_gt)


def _greedy(d: np.ndarray, g: np.ndarray, iou: np.ndarray, n_det: int, n_gt: int, t: float) -> np.ndarray:
    """pycocotools' loop: detections by rank take the best unmatched GT (ties to the later GT)."""
    order = np.lexsort((g, d))
    d, g, iou = d[order].tolist(), g[order].tolist(), iou[order].tolist()
    taken = np.zeros(n_gt, dtype=bool)
    out = np.zeros(n_det, dtype=bool)
    floor = min(t, 1 - 1e-10)
    k, n = 0, len(d)
    while k < n:
        det, best, m = d[k], floor, -1
        while k < n and d[k] == det:
            if not taken[g[k]] and iou[k] >= best:
                best, m = iou[k], g[k]
            k += 1
        if m >= 0:
            taken[m] = True
            out[det] = True
    return out


@dataclass(frozen=True)
class CocoResult:
    """The accumulated arrays (pycocotools' layout, area ``all``, one maxDets) and the summary."""

    precision: np.ndarray  # (10, 101, n_categories), -1 where a category has no GT
    recall: np.ndarray  # (10, n_categories)
    categories: tuple[str, ...]
    max_dets: int

    def _mean(self, values: np.ndarray) -> float | None:
        values = values[values > -1]
        return float(np.mean(values)) if values.size else None

    def summary(self) -> dict:
        """mAP@[.50:.05:.95], AP50, AP75, mAR, AR50, AR75 at ``max_dets`` (None without any GT)."""
        return {
            "map": self._mean(self.precision),
            "ap50": self._mean(self.precision[0]),
            "ap75": self._mean(self.precision[5]),
            "mar": self._mean(self.recall),
            "ar50": self._mean(self.recall[0]),
            "ar75": self._mean(self.recall[5]),
            "max_dets": self.max_dets,
        }


def coco_summary(per_category: Sequence[Sequence[CocoImage]], categories: Sequence[str], *, max_dets: int = 3000) -> CocoResult:
    """Accumulate per-image results of each category as ``COCOeval.accumulate`` does."""
    n_t, n_r, n_k = COCO_IOU_THRESHOLDS.size, RECALL_THRESHOLDS.size, len(per_category)
    precision = -np.ones((n_t, n_r, n_k))
    recall = -np.ones((n_t, n_k))
    for k, images in enumerate(per_category):
        images = [e for e in images if e.n_gt or e.scores.size]
        n_pos = sum(e.n_gt for e in images)
        if not images or n_pos == 0:
            continue
        scores = np.concatenate([e.scores for e in images])
        order = np.argsort(-scores, kind="mergesort")
        tps = np.concatenate([e.matched for e in images], axis=1)[:, order]
        tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
        fp_sum = np.cumsum(np.logical_not(tps), axis=1).astype(dtype=float)
        for t in range(n_t):
            tp, fp = tp_sum[t], fp_sum[t]
            nd = tp.size
            rc = tp / n_pos
            pr = tp / (fp + tp + np.spacing(1))
            recall[t, k] = rc[-1] if nd else 0
            pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
            idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
            q = np.zeros(n_r)
            ok = idx < nd
            q[ok] = pr[idx[ok]]
            precision[t, :, k] = q
    return CocoResult(precision=precision, recall=recall, categories=tuple(categories), max_dets=max_dets)


@dataclass(frozen=True)
class CocoParts:
    """One image's greedy matching, one :class:`CocoImage` per category (``categories``)."""

    categories: tuple[str, ...]
    images: tuple[CocoImage, ...]


@dataclass(frozen=True)
class CocoMetric(Metric):
    """COCO mask AP / AR of a set of images (needs a score on every prediction); ``max_dets`` per image.

    Categories go by class name; when either side has a single class the
    evaluation is class-agnostic (one category). Every image must give the
    same categories.
    """

    max_dets: int = 3000

    name = "coco"
    title = "COCO mask mAP@[.50:.05:.95], AP50, AP75, AR50, AR75 (pycocotools)"
    convention = ("greedy by score, per category: each detection in turn takes the still unmatched GT of highest "
                  "IoU >= t (ties: the later GT), at t = 0.50:0.05:0.95; at most max_dets detections per image")
    pooled = False
    needs_instances = True
    per_class = False  # COCO scores each category already

    def image(self, pair: ImagePair) -> CocoParts:
        scores = pair.pred.scores
        if scores is None:
            raise DataError(f"image {pair.name!r}: COCO metrics need a score for every predicted instance")
        parts = tuple(coco_image(pair.overlaps.select(gk, pk), scores[pk], max_dets=self.max_dets)
                      for _, gk, pk in pair.categories())
        return CocoParts(tuple(category_names(pair.gt.classes, pair.pred.classes)), parts)

    def values(self, part: CocoParts) -> dict:
        return {}

    def summary(self, parts: Sequence[CocoParts], names: Sequence[str]) -> CocoResult:
        categories = parts[0].categories if parts else ()
        for part, name in zip(parts, names):
            if part.categories != categories:
                raise DataError(f"image {name!r}: COCO categories {list(part.categories)} differ from earlier "
                                f"images' {list(categories)}")
        per_cat = [[p.images[k] for p in parts] for k in range(len(categories))]
        return coco_summary(per_cat, categories, max_dets=self.max_dets)
