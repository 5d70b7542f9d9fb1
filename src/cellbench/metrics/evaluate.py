"""Evaluate predictions against ground truth: per image, pooled, image mean, per class, COCO.

:func:`evaluate_image` scores one image; :class:`Evaluator` accumulates images
(``update`` / ``compute``) and :func:`evaluate` runs it over two sequences.
Inputs are :class:`~cellbench.instances.InstanceSet` (overlapping instances
are scored as they are, nothing is flattened) or integer label images.

Aggregations, all reported:

* ``pooled``: TP, FP and FN summed over images, then the ratios (the Glioma
  C6 paper's tables, StarDist ``matching_dataset(by_image=False)``);
* ``image_mean``: the ratios per image, then their mean, median and standard
  deviation over images (the NeurIPS-2022 report); images with no ground
  truth and no prediction have undefined ratios and are left out of these;
* ``per_class`` (optional): the same for each class alone, and ``macro``,
  the mean over classes of the pooled figures;
* ``coco`` (optional): see :mod:`cellbench.metrics.coco`.

Edge cases (each tested): no GT and no prediction -> TP = FP = FN = 0 and
every ratio is None; predictions but no GT -> precision, recall, F1, AP = 0
(all predictions are FP); GT but no prediction -> all 0 (all GT are FN);
label ids with gaps are fine; non-integer or negative labels are refused.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.instances import InstanceSet
from cellbench.matching import Counts, match, overlaps_from_instances, overlaps_from_labels, pooled
from cellbench.metrics.boundary import drop_boundary
from cellbench.metrics.coco import CocoImage, CocoResult, coco_image, coco_summary

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
    """One image's counts at each threshold, its pixel Dice and its COCO intermediates."""

    name: str
    n_gt: int
    n_pred: int
    counts: tuple[Counts, ...]
    dice: float | None
    coco: tuple[CocoImage, ...] | None = None  # one per COCO category
    per_class: dict[str, ImageResult] = field(default_factory=dict)

    def to_dict(self, thresholds: Sequence[float]) -> dict:
        return {
            "image": self.name,
            "n_gt": self.n_gt,
            "n_pred": self.n_pred,
            "dice": self.dice,
            "by_iou": {threshold_key(t): c.to_dict() for t, c in zip(thresholds, self.counts)},
        }


def _dice(inter: int, a: int, b: int) -> float | None:
    return 2.0 * inter / (a + b) if a + b else None


def _foreground_counts(gt: InstanceSet, pred: InstanceSet) -> tuple[int, int, int]:
    """Shared foreground pixels and both foreground areas, each pixel counted once (overlaps too)."""
    boxes = [i.bbox for i in (*gt, *pred)]
    if not boxes:
        return 0, 0, 0
    b = np.array(boxes)
    y0, x0 = b[:, 0].min(), b[:, 1].min()
    shape = (b[:, 2].max() - y0, b[:, 3].max() - x0)
    fg = []
    for s in (gt, pred):
        m = np.zeros(shape, dtype=bool)
        for inst in s:
            iy0, ix0, iy1, ix1 = inst.bbox
            m[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] |= inst.mask
        fg.append(m)
    return int(np.count_nonzero(fg[0] & fg[1])), int(np.count_nonzero(fg[0])), int(np.count_nonzero(fg[1]))


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
    coco: bool = False,
    max_dets: int = 3000,
    per_class: bool = False,
    name: str = "image",
) -> ImageResult:
    """Score one image.

    Two label images take a fast path (pixel-pair counting); anything else is
    compared as instances, overlaps included. ``coco`` needs prediction scores.

    >>> gt = np.array([[1, 1, 0, 2, 2], [1, 1, 0, 2, 2]])
    >>> pred = np.array([[3, 3, 0, 0, 0], [3, 3, 0, 0, 4]])
    >>> r = evaluate_image(gt, pred, thresholds=[0.5])
    >>> r.counts[0].tp, r.counts[0].fp, r.counts[0].fn, r.dice
    (1, 1, 1, 0.7692307692307693)
    """
    labels_path = (
        not isinstance(gt, InstanceSet) and not isinstance(pred, InstanceSet) and not coco and not per_class
    )
    if labels_path:
        g = _drop_boundary_labels(np.asarray(gt), boundary_px)
        p = _drop_boundary_labels(np.asarray(pred), boundary_px)
        try:
            ov, _, _ = overlaps_from_labels(g, p)
        except DataError as exc:
            raise DataError(f"{exc} ({name})") from None
        counts = tuple(match(ov, thresholds))
        dice = _dice(int(ov.intersection.sum()), int(ov.gt_area.sum()), int(ov.pred_area.sum()))
        return ImageResult(name, ov.n_gt, ov.n_pred, counts, dice)

    g = drop_boundary(_as_instances(gt, "ground truth", name), boundary_px)
    p = drop_boundary(_as_instances(pred, "prediction", name), boundary_px)
    if tuple(g.shape) != tuple(p.shape):
        raise DataError(f"image {name!r}: ground truth is {tuple(g.shape)} but prediction is {tuple(p.shape)}")
    ov = overlaps_from_instances(g, p)
    counts = tuple(match(ov, thresholds))
    dice = _dice(*_foreground_counts(g, p))
    coco_parts = None
    if coco:
        scores = p.scores
        if scores is None:
            raise DataError(f"image {name!r}: COCO metrics need a score for every predicted instance")
        coco_parts = tuple(
            coco_image(ov.select(gk, pk), scores[pk], max_dets=max_dets) for _, gk, pk in _category_masks(g, p)
        )
    classes = {}
    if per_class:
        for cname, gk, pk in _category_masks(g, p, by_name=True):
            sub_g = g.replace(instances=tuple(i for i, k in zip(g, gk) if k))
            sub_p = p.replace(instances=tuple(i for i, k in zip(p, pk) if k))
            sub_ov = ov.select(gk, pk)
            classes[cname] = ImageResult(
                name,
                sub_ov.n_gt,
                sub_ov.n_pred,
                tuple(match(sub_ov, thresholds)),
                _dice(*_foreground_counts(sub_g, sub_p)),
            )
    return ImageResult(name, ov.n_gt, ov.n_pred, counts, dice, coco_parts, classes)


def _category_masks(g: InstanceSet, p: InstanceSet, *, by_name: bool = False):
    """(category, GT selector, prediction selector) per category.

    Categories are matched by class name. For COCO, when either side has a
    single class the evaluation is class-agnostic (one category), so a model
    that calls everything "cell" is scored against GT named "nucleus".
    """
    names = _category_names(g.classes, p.classes, by_name=by_name)
    if not by_name and len(names) == 1:
        yield names[0], np.ones(len(g), bool), np.ones(len(p), bool)
        return
    gnames = np.array([g.classes[i.class_id] for i in g], dtype=object)
    pnames = np.array([p.classes[i.class_id] for i in p], dtype=object)
    for cname in names:
        yield cname, gnames == cname, pnames == cname


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


def _aggregate(images: Sequence[ImageResult], thresholds: Sequence[float]) -> tuple[dict, dict]:
    pooled, image_mean = {}, {}
    dice_mean, dice_median, dice_std, _ = _stats([r.dice for r in images])
    for k, t in enumerate(thresholds):
        pooled[threshold_key(t)] = _pooled(images, k).to_dict()
        row = {}
        for metric in ("precision", "recall", "f1", "ap_dsb", "pq", "mean_matched_iou"):
            mean, median, std, n = _stats([getattr(r.counts[k], metric) for r in images])
            row[metric] = mean
            if metric in ("f1", "precision", "recall", "ap_dsb"):
                row[f"{metric}_median"] = median
                row[f"{metric}_std"] = std
        row["dice"] = dice_mean
        row["dice_median"] = dice_median
        row["dice_std"] = dice_std
        row["n_images"] = n
        image_mean[threshold_key(t)] = row
    return pooled, image_mean


@dataclass(frozen=True)
class Evaluation:
    """Everything :func:`evaluate` computed, with the settings that produced it."""

    thresholds: tuple[float, ...]
    settings: dict
    images: tuple[ImageResult, ...]
    coco: CocoResult | None = None

    def pooled(self, threshold: float) -> Counts:
        """Summed counts at one threshold."""
        return _pooled(self.images, self.thresholds.index(threshold))

    def to_dict(self) -> dict:
        pooled, image_mean = _aggregate(self.images, self.thresholds)
        out = {
            "iou_thresholds": [float(t) for t in self.thresholds],
            "settings": dict(self.settings),
            "n_images": len(self.images),
            "pooled": pooled,
            "image_mean": image_mean,
            "per_image": [r.to_dict(self.thresholds) for r in self.images],
        }
        if self.coco is not None:
            out["coco"] = self.coco.summary()
        if self.settings.get("per_class"):
            out["per_class"] = self._per_class()
        return out

    def _per_class(self) -> dict:
        names = list(dict.fromkeys(n for r in self.images for n in r.per_class))
        out = {}
        for cname in names:
            rows = [r.per_class[cname] for r in self.images if cname in r.per_class]
            pooled, image_mean = _aggregate(rows, self.thresholds)
            out[cname] = {"pooled": pooled, "image_mean": image_mean}
        scored = [c for c in names if any(r.per_class[c].n_gt for r in self.images if c in r.per_class)]
        macro = {}
        for t in self.thresholds:
            key = threshold_key(t)
            macro[key] = {
                m: _mean_defined([out[c]["pooled"][key][m] for c in scored])
                for m in ("precision", "recall", "f1", "ap_dsb", "pq", "mean_matched_iou")
            }
        out["macro"] = {"classes": scored, "pooled": macro}
        return out

    def per_image_rows(self) -> list[dict]:
        """One flat row per image (the CSV table): name, counts, Dice, and every metric at every threshold."""
        rows = []
        for r in self.images:
            row = {"image": r.name, "n_gt": r.n_gt, "n_pred": r.n_pred, "dice": r.dice}
            for t, c in zip(self.thresholds, r.counts):
                for metric, value in c.to_dict().items():
                    row[f"{metric}@{threshold_key(t)}"] = value
            rows.append(row)
        return rows

    def to_csv(self, path: str | Path) -> None:
        """Write the per-image table (atomically)."""
        rows = self.per_image_rows()
        buf = io.StringIO()
        fields = list(rows[0]) if rows else ["image", "n_gt", "n_pred", "dice"]
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

    >>> ev = Evaluator(thresholds=(0.5,))
    >>> _ = ev.update(np.array([[1, 1], [0, 0]]), np.array([[1, 1], [0, 0]]), name="a")
    >>> ev.compute().to_dict()["pooled"]["0.5"]["f1"]
    1.0
    """

    def __init__(
        self,
        *,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        boundary_px: int = 0,
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
        self.coco = coco
        self.max_dets = int(max_dets)
        self.per_class = per_class
        self._images: list[ImageResult] = []
        self._classes: list[str] = []

    def update(self, gt: Segmentation, pred: Segmentation, *, name: str | None = None) -> ImageResult:
        name = name if name is not None else f"image_{len(self._images)}"
        result = evaluate_image(
            gt,
            pred,
            thresholds=self.thresholds,
            boundary_px=self.boundary_px,
            coco=self.coco,
            max_dets=self.max_dets,
            per_class=self.per_class,
            name=name,
        )
        if self.coco:
            cats = _category_names(_classes(gt), _classes(pred))
            if not self._classes:
                self._classes = cats
            elif cats != self._classes:
                raise DataError(f"image {name!r}: COCO categories {cats} differ from earlier images' {self._classes}")
        self._images.append(result)
        return result

    def compute(self) -> Evaluation:
        coco = None
        if self.coco:
            n_cat = len(self._classes)
            per_cat = [[r.coco[k] for r in self._images] for k in range(n_cat)]
            coco = coco_summary(per_cat, self._classes, max_dets=self.max_dets)
        settings = {
            "boundary_px": self.boundary_px,
            "boundary_rule": (
                f"instances with a pixel within {self.boundary_px} px of the image edge removed from GT and "
                "prediction independently (NeurIPS-2022)"
                if self.boundary_px
                else "off"
            ),
            "matching": "optimal one-to-one (Hungarian), cost -(iou>=t) - iou/(2*n_min); TP when IoU >= t",
            "ap_dsb": "TP / (TP + FP + FN)",
            "pooled": "TP, FP, FN summed over images, then the ratios",
            "image_mean": "ratios per image, then mean / median / sample std over images with defined values",
            "per_class": self.per_class,
            "coco_max_dets": self.max_dets if self.coco else None,
        }
        return Evaluation(self.thresholds, settings, tuple(self._images), coco)


def _category_names(g: Sequence[str], p: Sequence[str], *, by_name: bool = False) -> list[str]:
    """Category names of a GT / prediction pair: by class name, or one class-agnostic category for COCO
    when either side has a single class (unless ``by_name``)."""
    if not by_name and (len(g) == 1 or len(p) == 1):
        return [g[0]]
    return list(dict.fromkeys([*g, *p]))


def _classes(x: Segmentation) -> tuple[str, ...]:
    return x.classes if isinstance(x, InstanceSet) else ("cell",)


def evaluate(
    gt: Sequence[Segmentation],
    pred: Sequence[Segmentation],
    *,
    names: Sequence[str] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    boundary_px: int = 0,
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
    ev = Evaluator(thresholds=thresholds, boundary_px=boundary_px, coco=coco, max_dets=max_dets, per_class=per_class)
    pairs = list(zip(gt, pred))
    iterator = progress(pairs, desc="evaluate", unit="image") if progress else pairs
    for k, (g, p) in enumerate(iterator):
        ev.update(g, p, name=names[k] if names is not None else None)
    return ev.compute()
