"""Evaluate predictions against ground truth: per image, pooled, image mean, per class, COCO.

:func:`evaluate_image` scores one image; :class:`Evaluator` accumulates images
(``update`` / ``compute``) and :func:`evaluate` runs it over two sequences or
iterators, one pair at a time. What is kept of the images scored is their
running figures (:mod:`cellbench.metrics.aggregate`) and, unless
``per_image`` names a JSON-lines file for them, each image's record. Inputs are :class:`~cellbench.instances.InstanceSet` (overlapping instances
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

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.matching import overlaps_from_instances, overlaps_from_labels
from cellbench.metrics.aggregate import Evaluation, ImageResult, PerImageFile, Tally, threshold_key
from cellbench.metrics.base import ImagePair, Metric
from cellbench.metrics.boundary import drop_boundary, drop_boundary_labels
from cellbench.metrics.coco import CocoMetric
from cellbench.metrics.label_files import is_label_file, label_file_overlaps
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

#: What is scored: instances (overlaps kept), a label image, or a label-image file read in bands
#: (:class:`~cellbench.data.label_file.LabelFile`).
Segmentation = InstanceSet | np.ndarray | Any


def _array(x: Segmentation) -> np.ndarray:
    return x.read() if is_label_file(x) else np.asarray(x)


def _as_instances(x: Segmentation, what: str, name: str) -> InstanceSet:
    if isinstance(x, InstanceSet):
        return x
    return InstanceSet.from_label_image(_array(x), source=f"{what} of {name}")


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
    needs instances; two :class:`~cellbench.data.label_file.LabelFile` take
    it a band of rows at a time (:mod:`cellbench.metrics.label_files`: the
    same numbers, without whole arrays); anything else is compared as
    instances, overlaps included. COCO needs prediction scores.

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
    if labels_path and is_label_file(gt) and is_label_file(pred):
        pair = ImagePair(name, thresholds, label_file_overlaps(gt, pred, boundary_px=boundary_px, name=name))
    elif labels_path:
        g = drop_boundary_labels(_array(gt), boundary_px)
        p = drop_boundary_labels(_array(pred), boundary_px)
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


class Evaluator:
    """Scores images one at a time (``update``) and returns an :class:`Evaluation` (``compute``).

    ``metrics`` are names of :data:`~cellbench.metrics.registry.METRICS` or
    :class:`~cellbench.metrics.base.Metric` objects (default: the matching
    counts and pixel Dice); ``coco`` and ``max_dets`` add the COCO metric.

    Only the running figures are kept (:class:`~cellbench.metrics.aggregate.Tally`)
    and, by default, each image's :class:`ImageResult`. With ``per_image`` a
    file, the per-image records go there instead, one JSON line each, as the
    images are scored: memory then stays flat however many images there are
    (a few hundred bytes per image for the medians; COCO keeps its ranked
    detections). The file appears under its name at :meth:`compute`; used as
    a ``with`` block, an error removes it (:meth:`discard`), so it is never
    half-written.

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
        per_image: str | Path | None = None,
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
        self._tally = Tally(self.metrics, self.thresholds)
        self._images: list[ImageResult] = []
        self._file = None if per_image is None else PerImageFile(per_image)
        self._done = False

    def update(self, gt: Segmentation, pred: Segmentation, *, name: str | None = None) -> ImageResult:
        """Score one image and count it in; returns its result."""
        if self._done and self._file is not None:
            raise DataError("this evaluation's per-image file is complete: compute() was called", path=self._file.path)
        name = name if name is not None else f"image_{self._tally.n_images}"
        result = evaluate_image(gt, pred, thresholds=self.thresholds, boundary_px=self.boundary_px,
                                metrics=self.metrics, per_class=self.per_class, name=name)
        self._tally.add(result)
        if self._file is not None:
            self._file.write(result.to_dict(self.metrics, self.thresholds))
        else:
            self._images.append(result)
        return result

    def compute(self) -> Evaluation:
        """The evaluation of the images so far (with ``per_image``: completes the file; no image can follow)."""
        path = None
        if self._file is not None:
            path = self._file.path if self._done else self._file.close()
        self._done = True
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
        return Evaluation(self.thresholds, settings, tuple(self._images), self.metrics, self._tally.summaries(),
                          self._tally, path)

    def discard(self) -> None:
        """Remove the unfinished per-image file (nothing is left under its name)."""
        if self._file is not None and not self._done:
            self._file.discard()
        self._done = True

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            self.discard()


def evaluate(
    gt: Iterable[Segmentation],
    pred: Iterable[Segmentation],
    *,
    names: Iterable[str] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    boundary_px: int = 0,
    metrics: Sequence[str | Metric] | None = None,
    coco: bool = False,
    max_dets: int = 3000,
    per_class: bool = False,
    per_image: str | Path | None = None,
    progress=None,
) -> Evaluation:
    """Score paired ground truth and predictions (InstanceSets, label images or label files), one pair at a time.

    ``gt``, ``pred`` and ``names`` may be iterators (a generator reading one
    file at a time): nothing but the running figures is kept, plus each
    image's result unless ``per_image`` names a file for the per-image records
    (see :class:`Evaluator`).

    >>> gt = [np.array([[1, 1, 0, 2]]), np.array([[0, 0, 0, 0]])]
    >>> pred = [np.array([[1, 1, 0, 0]]), np.array([[0, 0, 0, 0]])]
    >>> res = evaluate(gt, pred, thresholds=[0.5]).to_dict()
    >>> res["pooled"]["0.5"]["tp"], res["pooled"]["0.5"]["fn"], res["per_image"][1]["by_iou"]["0.5"]["f1"]
    (1, 1, None)
    """
    total = None
    if all(hasattr(x, "__len__") for x in (gt, pred)):
        total = len(gt)
        if len(gt) != len(pred):
            raise DataError(f"{len(gt)} ground-truth images but {len(pred)} predictions")
        if names is not None and hasattr(names, "__len__") and len(names) != len(gt):
            raise DataError(f"{len(names)} names for {len(gt)} images")
    with Evaluator(thresholds=thresholds, boundary_px=boundary_px, metrics=metrics, coco=coco, max_dets=max_dets,
                   per_class=per_class, per_image=per_image) as ev:
        triples = _in_step(gt, pred, names)
        for g, p, n in progress(triples, desc="evaluate", unit="image", total=total) if progress else triples:
            ev.update(g, p, name=n)
        return ev.compute()


def _in_step(gt: Iterable, pred: Iterable, names: Iterable[str] | None) -> Iterator[tuple]:
    """(ground truth, prediction, name) in step, read one at a time; an error when one runs out first."""
    end = object()
    gi, pi, ni = iter(gt), iter(pred), None if names is None else iter(names)
    count = 0
    while True:
        g, p = next(gi, end), next(pi, end)
        n = None if ni is None else next(ni, end)
        done = [x is end for x in (g, p, *(() if ni is None else (n,)))]
        if all(done):
            return
        if any(done):
            what = "ground truth, predictions and names" if ni is not None else "ground truth and predictions"
            raise DataError(f"{what} differ in number: one of them ends after {count} image(s)")
        yield g, p, n
        count += 1
