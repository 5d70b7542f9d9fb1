"""Evaluate predictions against ground truth: per image, pooled, image mean, per class, COCO.

:func:`evaluate_image` scores one image; :class:`Evaluator` accumulates images
(``update`` / ``compute``) and :func:`evaluate` runs it over two sequences.
Inputs are :class:`~cellbench.instances.InstanceSet` (overlapping instances
are scored as they are, nothing is flattened) or integer label images.

What is scored is a list of metric families (:mod:`cellbench.metrics.base`,
listed in :mod:`cellbench.metrics.registry`; by default the matching counts
and pixel Dice): this module names no metric value. Each family's values are
written per image (under ``by_iou`` for the per-threshold ones), pooled and
image-mean beside each threshold; ``settings["metrics"]`` records each
family's title and matching convention.

Aggregations, all reported:

* ``pooled``: TP, FP and FN summed over images, then the ratios (the Glioma
  C6 paper's tables, StarDist ``matching_dataset(by_image=False)``);
* ``image_mean``: the ratios per image, then their mean, median and standard
  deviation over images (the NeurIPS-2022 report); images with no ground
  truth and no prediction have undefined ratios and are left out of these;
* ``per_class`` (optional): the same for each class alone, and ``macro``,
  the mean over classes of the pooled figures;
* ``coco`` (optional): see :mod:`cellbench.metrics.coco`; a figure of the
  whole set, under its metric's name.

Edge cases (each tested): no GT and no prediction -> TP = FP = FN = 0 and
every ratio is None; predictions but no GT -> precision, recall, F1, AP = 0
(all predictions are FP); GT but no prediction -> all 0 (all GT are FN);
label ids with gaps are fine; non-integer or negative labels are refused.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.instances import InstanceSet
from cellbench.matching import Counts, overlaps_from_instances, overlaps_from_labels, pooled
from cellbench.metrics.base import ImagePair, Metric
from cellbench.metrics.boundary import drop_boundary
from cellbench.metrics.coco import CocoImage, CocoMetric, CocoResult
from cellbench.metrics.dice import PixelDice
from cellbench.metrics.matched_counts import MatchedCounts
from cellbench.metrics.registry import resolve_metrics

__all__ = [
    "COUNT_BINS",
    "DEFAULT_THRESHOLDS",
    "GLIOMA_THRESHOLDS",
    "NEURIPS_THRESHOLDS",
    "REPORT_THRESHOLDS",
    "Evaluation",
    "Evaluator",
    "ImageResult",
    "evaluate",
    "evaluate_image",
    "threshold_key",
]

#: IoU thresholds of the Glioma C6 paper's tables ("AP" at 0.5 / 0.75 / 0.9).
GLIOMA_THRESHOLDS = (0.5, 0.75, 0.9)
#: IoU thresholds of the NeurIPS-2022 report's "Performance Across Thresholds".
NEURIPS_THRESHOLDS = (0.5, 0.7, 0.9)
#: GT cell-count bins of the NeurIPS-2022 report's "Performance by Cell Count" (inclusive bounds; 100+ is more than
#: 100); an image's count is of its ground-truth instances after the boundary rule (``n_gt`` of its per-image record).
COUNT_BINS: tuple[tuple[str, int, float], ...] = (
    ("6-10", 6, 10), ("11-20", 11, 20), ("21-50", 21, 50), ("51-100", 51, 100), ("100+", 101, math.inf),
)
#: Every threshold a cellbench report table shows; what an experiment evaluates unless told otherwise.
REPORT_THRESHOLDS = tuple(sorted({*GLIOMA_THRESHOLDS, *NEURIPS_THRESHOLDS}))
#: The thresholds of :func:`evaluate` and ``cellbench evaluate`` unless told otherwise: the Glioma paper's.
DEFAULT_THRESHOLDS = GLIOMA_THRESHOLDS

Segmentation = InstanceSet | np.ndarray


def threshold_key(t: float) -> str:
    """The key of an IoU threshold in result dicts, as Python writes the float.

    >>> threshold_key(0.5), threshold_key(1)
    ('0.5', '1.0')
    """
    return repr(float(t))


@dataclass(frozen=True)
class ImageResult:
    """One image's part of every metric (by metric name; a tuple of parts, one per threshold, for the
    per-threshold ones) and, for a per-class evaluation, the same for each class alone."""

    name: str
    n_gt: int
    n_pred: int
    parts: Mapping[str, Any]
    per_class: dict[str, ImageResult] = field(default_factory=dict)

    @property
    def counts(self) -> tuple[Counts, ...]:
        """The matching counts at each threshold."""
        return self.parts[MatchedCounts.name]

    @property
    def dice(self) -> float | None:
        """Pixel Dice of the foregrounds (None when not scored)."""
        part = self.parts.get(PixelDice.name)
        return None if part is None else part.dice

    @property
    def coco(self) -> tuple[CocoImage, ...] | None:
        """The COCO intermediates, one per category (None when not scored)."""
        part = self.parts.get(CocoMetric.name)
        return None if part is None else part.images

    def to_dict(self, metrics: Sequence[Metric], thresholds: Sequence[float]) -> dict:
        out = {"image": self.name, "n_gt": self.n_gt, "n_pred": self.n_pred}
        by_iou = {threshold_key(t): {} for t in thresholds}
        for m in metrics:
            part = self.parts[m.name]
            if not m.per_threshold:
                out.update(m.values(part))
                continue
            for t, p in zip(thresholds, part):
                by_iou[threshold_key(t)].update(m.values(p))
        out["by_iou"] = by_iou
        return out


def _as_instances(x: Segmentation, what: str, name: str) -> InstanceSet:
    if isinstance(x, InstanceSet):
        return x
    return InstanceSet.from_label_image(np.asarray(x), source=f"{what} of {name}")


def _drop_boundary_labels(labels: np.ndarray, px: int) -> np.ndarray:
    """Label image with every instance touching the ``px``-wide frame set to 0 (the label twin of drop_boundary)."""
    if px <= 0 or labels.dtype.kind not in "iu":  # non-integer labels are refused by overlaps_from_labels
        return labels
    frame = np.concatenate([labels[:px].ravel(), labels[-px:].ravel(), labels[:, :px].ravel(), labels[:, -px:].ravel()])
    touching = np.unique(frame)
    touching = touching[touching != 0]
    if touching.size == 0:
        return labels
    return np.where(np.isin(labels, touching), 0, labels)


def evaluate_image(
    gt: Segmentation,
    pred: Segmentation,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    boundary_px: int = 0,
    metrics: Sequence[str | Metric] | None = None,
    coco: bool = False,
    max_dets: int = 3000,
    per_class: bool = False,
    name: str = "image",
) -> ImageResult:
    """Score one image with ``metrics`` (names or :class:`~cellbench.metrics.base.Metric` objects; see
    :func:`~cellbench.metrics.registry.resolve_metrics`, which also reads ``coco`` and ``max_dets``).

    Two label images take a fast path (pixel-pair counting) unless a metric
    needs instances; anything else is compared as instances, overlaps
    included. COCO needs prediction scores.

    >>> gt = np.array([[1, 1, 0, 2, 2], [1, 1, 0, 2, 2]])
    >>> pred = np.array([[3, 3, 0, 0, 0], [3, 3, 0, 0, 4]])
    >>> r = evaluate_image(gt, pred, thresholds=[0.5])
    >>> r.counts[0].tp, r.counts[0].fp, r.counts[0].fn, r.dice
    (1, 1, 1, 0.7692307692307693)
    """
    metrics = resolve_metrics(metrics, coco=coco, max_dets=max_dets)
    thresholds = tuple(thresholds)
    labels_path = (
        not isinstance(gt, InstanceSet) and not isinstance(pred, InstanceSet) and not per_class
        and not any(m.needs_instances for m in metrics)
    )
    if labels_path:
        g = _drop_boundary_labels(np.asarray(gt), boundary_px)
        p = _drop_boundary_labels(np.asarray(pred), boundary_px)
        try:
            ov, _, _ = overlaps_from_labels(g, p)
        except DataError as exc:
            raise DataError(f"{exc} ({name})") from None
        pair = ImagePair(name, thresholds, ov)
    else:
        g = drop_boundary(_as_instances(gt, "ground truth", name), boundary_px)
        p = drop_boundary(_as_instances(pred, "prediction", name), boundary_px)
        if tuple(g.shape) != tuple(p.shape):
            raise DataError(f"image {name!r}: ground truth is {tuple(g.shape)} but prediction is {tuple(p.shape)}")
        pair = ImagePair(name, thresholds, overlaps_from_instances(g, p), g, p)
    classes = {}
    if per_class:
        for cname, gk, pk in pair.categories(by_name=True):
            sub = pair.select(gk, pk)
            classes[cname] = _image_result(sub, [m for m in metrics if m.per_class])
    return _image_result(pair, metrics, classes)


def _image_result(pair: ImagePair, metrics: Sequence[Metric], classes: dict | None = None) -> ImageResult:
    parts = {m.name: m.image(pair) for m in metrics}
    return ImageResult(pair.name, pair.overlaps.n_gt, pair.overlaps.n_pred, parts, classes or {})


def _stats(values: list[float | None]) -> tuple[float | None, float | None, float | None, int]:
    """Mean, median, sample std (ddof 1, as pandas) of the defined values, and their count."""
    vals = np.array([v for v in values if v is not None], dtype=np.float64)
    if vals.size == 0:
        return None, None, None, 0
    std = float(np.std(vals, ddof=1)) if vals.size > 1 else None
    return float(np.mean(vals)), float(np.median(vals)), std, int(vals.size)


def _pooled(images: Sequence[ImageResult], k: int) -> Counts:
    """Counts at the ``k``-th threshold summed over images."""
    return pooled(r.counts[k] for r in images)


def _image_stats(metric: Metric, rows: Sequence[dict]) -> dict:
    """Mean over images of each averaged value (with median and sample std for those in ``spread``)."""
    out = {}
    for value in metric.averaged:
        mean, median, std, _ = _stats([row[value] for row in rows])
        out[value] = mean
        if value in metric.spread:
            out[f"{value}_median"] = median
            out[f"{value}_std"] = std
    return out


def _aggregate(images: Sequence[ImageResult], thresholds: Sequence[float], metrics: Sequence[Metric]
               ) -> tuple[dict, dict]:
    """Pooled and image-mean rows per threshold: each per-threshold metric at that threshold, then the
    threshold-free ones (the same in every row), then ``n_images`` (images with defined matching counts)."""

    def rows(m: Metric, parts: list) -> tuple[dict, dict]:
        return (m.values(m.total(parts)) if m.pooled else {}), _image_stats(m, [m.values(p) for p in parts])

    free_pooled, free_mean = {}, {}
    for m in metrics:
        if not m.per_threshold:
            p, i = rows(m, [r.parts[m.name] for r in images])
            free_pooled.update(p)
            free_mean.update(i)
    pooled, image_mean = {}, {}
    for k, t in enumerate(thresholds):
        row_pooled, row_mean = {}, {}
        for m in metrics:
            if m.per_threshold:
                p, i = rows(m, [r.parts[m.name][k] for r in images])
                row_pooled.update(p)
                row_mean.update(i)
        pooled[threshold_key(t)] = {**row_pooled, **free_pooled}
        image_mean[threshold_key(t)] = {**row_mean, **free_mean,
                                        "n_images": sum(not r.counts[k].empty for r in images)}
    return pooled, image_mean


@dataclass(frozen=True)
class Evaluation:
    """Everything :func:`evaluate` computed, with the metrics and settings that produced it.

    ``summaries`` holds the figures of whole sets of images by metric name (COCO).
    """

    thresholds: tuple[float, ...]
    settings: dict
    images: tuple[ImageResult, ...]
    metrics: tuple[Metric, ...] = field(default_factory=resolve_metrics)
    summaries: Mapping[str, Any] = field(default_factory=dict)

    @property
    def coco(self) -> CocoResult | None:
        """The COCO figures (None when not scored)."""
        return self.summaries.get(CocoMetric.name)

    def pooled(self, threshold: float) -> Counts:
        """Summed counts at one threshold."""
        return _pooled(self.images, self.thresholds.index(threshold))

    def to_dict(self) -> dict:
        pooled, image_mean = _aggregate(self.images, self.thresholds, self.metrics)
        out = {
            "iou_thresholds": [float(t) for t in self.thresholds],
            "settings": dict(self.settings),
            "n_images": len(self.images),
            "pooled": pooled,
            "image_mean": image_mean,
            "per_image": [r.to_dict(self.metrics, self.thresholds) for r in self.images],
        }
        for name, summary in self.summaries.items():
            out[name] = summary.summary()
        if self.settings.get("per_class"):
            out["per_class"] = self._per_class()
        return out

    def _per_class(self) -> dict:
        metrics = [m for m in self.metrics if m.per_class]
        names = list(dict.fromkeys(n for r in self.images for n in r.per_class))
        out = {}
        for cname in names:
            rows = [r.per_class[cname] for r in self.images if cname in r.per_class]
            pooled, image_mean = _aggregate(rows, self.thresholds, metrics)
            out[cname] = {"pooled": pooled, "image_mean": image_mean}
        scored = [c for c in names if any(r.per_class[c].n_gt for r in self.images if c in r.per_class)]
        macro = {}
        for t in self.thresholds:
            key = threshold_key(t)
            macro[key] = {
                v: _mean_defined([out[c]["pooled"][key][v] for c in scored])
                for m in metrics if m.pooled for v in m.averaged
            }
        out["macro"] = {"classes": scored, "pooled": macro}
        return out

    def per_image_rows(self) -> list[dict]:
        """One flat row per image (the CSV table): name, counts, every threshold-free value, and every other
        value at every threshold."""
        rows = []
        for r in self.images:
            d = r.to_dict(self.metrics, self.thresholds)
            by_iou = d.pop("by_iou")
            row = dict(d)
            for key, values in by_iou.items():
                for metric, value in values.items():
                    row[f"{metric}@{key}"] = value
            rows.append(row)
        return rows

    def to_csv(self, path: str | Path) -> None:
        """Write the per-image table (atomically)."""
        rows = self.per_image_rows()
        buf = io.StringIO()
        free = [v for m in self.metrics if not m.per_threshold for v in m.averaged]
        fields = list(rows[0]) if rows else ["image", "n_gt", "n_pred", *free]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        atomic_write_bytes(Path(path), buf.getvalue().encode())


def _mean_defined(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


class Evaluator:
    """Accumulates images (``update``) and returns an :class:`Evaluation` (``compute``).

    ``metrics`` are names of :data:`~cellbench.metrics.registry.METRICS` or
    :class:`~cellbench.metrics.base.Metric` objects (default: the matching
    counts and pixel Dice); ``coco`` and ``max_dets`` add the COCO metric.

    >>> ev = Evaluator(thresholds=(0.5,), metrics=["matching", "dice", "aji"])
    >>> _ = ev.update(np.array([[1, 1], [0, 0]]), np.array([[1, 1], [0, 0]]), name="a")
    >>> d = ev.compute().to_dict()
    >>> d["pooled"]["0.5"]["f1"], d["pooled"]["0.5"]["aji"], d["per_image"][0]["aji"]
    (1.0, 1.0, 1.0)
    """

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        boundary_px: int = 0,
        metrics: Sequence[str | Metric] | None = None,
        coco: bool = False,
        max_dets: int = 3000,
        per_class: bool = False,
    ) -> None:
        thresholds = tuple(float(t) for t in thresholds)
        bad = [t for t in thresholds if not 0.0 < t <= 1.0]
        if not thresholds or bad:
            raise DataError(f"IoU thresholds must be in (0, 1], got {list(thresholds)}")
        if boundary_px < 0:
            raise DataError(f"boundary width must be >= 0 pixels, got {boundary_px}")
        self.thresholds = thresholds
        self.boundary_px = int(boundary_px)
        self.metrics = resolve_metrics(metrics, coco=coco, max_dets=max_dets)
        self.per_class = per_class
        self._images: list[ImageResult] = []

    def update(self, gt: Segmentation, pred: Segmentation, *, name: str | None = None) -> ImageResult:
        name = name if name is not None else f"image_{len(self._images)}"
        result = evaluate_image(gt, pred, thresholds=self.thresholds, boundary_px=self.boundary_px,
                                metrics=self.metrics, per_class=self.per_class, name=name)
        self._images.append(result)
        return result

    def compute(self) -> Evaluation:
        names = [r.name for r in self._images]
        summaries = {}
        for m in self.metrics:
            summary = m.summary([r.parts[m.name] for r in self._images], names)
            if summary is not None:
                summaries[m.name] = summary
        coco = next((m for m in self.metrics if isinstance(m, CocoMetric)), None)
        settings = {
            "boundary_px": self.boundary_px,
            "boundary_rule": (
                f"instances with a pixel within {self.boundary_px} px of the image edge removed from GT and "
                "prediction independently (NeurIPS-2022)"
                if self.boundary_px
                else "off"
            ),
            "matching": MatchedCounts.convention,
            "ap_dsb": "TP / (TP + FP + FN)",
            "pooled": "TP, FP, FN summed over images, then the ratios",
            "image_mean": "ratios per image, then mean / median / sample std over images with defined values",
            "per_class": self.per_class,
            "coco_max_dets": coco.max_dets if coco is not None else None,
            "metrics": {m.name: {"title": m.title, "convention": m.convention} for m in self.metrics},
        }
        return Evaluation(self.thresholds, settings, tuple(self._images), self.metrics, summaries)


def evaluate(
    gt: Sequence[Segmentation],
    pred: Sequence[Segmentation],
    *,
    names: Sequence[str] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    boundary_px: int = 0,
    metrics: Sequence[str | Metric] | None = None,
    coco: bool = False,
    max_dets: int = 3000,
    per_class: bool = False,
    progress=None,
) -> Evaluation:
    """Score paired sequences of ground truth and predictions (InstanceSets or label images).

    >>> gt = [np.array([[1, 1, 0, 2]]), np.array([[0, 0, 0, 0]])]
    >>> pred = [np.array([[1, 1, 0, 0]]), np.array([[0, 0, 0, 0]])]
    >>> res = evaluate(gt, pred, thresholds=[0.5]).to_dict()
    >>> res["pooled"]["0.5"]["tp"], res["pooled"]["0.5"]["fn"], res["per_image"][1]["by_iou"]["0.5"]["f1"]
    (1, 1, None)
    """
    if len(gt) != len(pred):
        raise DataError(f"{len(gt)} ground-truth images but {len(pred)} predictions")
    if names is not None and len(names) != len(gt):
        raise DataError(f"{len(names)} names for {len(gt)} images")
    ev = Evaluator(thresholds=thresholds, boundary_px=boundary_px, metrics=metrics, coco=coco, max_dets=max_dets,
                   per_class=per_class)
    pairs = list(zip(gt, pred))
    iterator = progress(pairs, desc="evaluate", unit="image") if progress else pairs
    for k, (g, p) in enumerate(iterator):
        ev.update(g, p, name=names[k] if names is not None else None)
    return ev.compute()
