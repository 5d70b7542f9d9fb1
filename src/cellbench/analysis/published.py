"""Published numbers against a run: the metric names a published value may use, and a comparison with an interval.

A paper's number is compared with what a run measured for the same quantity.
The quantity is named with one of these metric names (:func:`parse_metric`
reads them; every name is something a stored evaluation, ``Evaluation.to_dict()``,
holds or yields, so the report computes all of them):

* ``precision@T``, ``recall@T``, ``f1@T``, ``ap_dsb@T``: **pooled** over the
  images at IoU ``T`` (TP, FP, FN summed, then the ratio; the Glioma C6 paper's
  tables). ``ap_dsb`` = TP / (TP + FP + FN), the "AP" of Cellpose, CellSeg1 and
  the Glioma C6 paper, not COCO AP.
* ``mean_X@T``, ``median_X@T``, ``std_X@T`` for X in precision, recall, f1,
  ap_dsb: the ratio **per image**, then the mean, median or sample sd (ddof 1)
  over the images where it is defined (the NeurIPS-2022 report; CellSeg1's
  mAP50 is ``mean_ap_dsb@0.5``). ``mean_dice``, ``median_dice``, ``std_dice``:
  pixel Dice of the binary foreground per image.
* ``mean_X@T[BIN]``: the mean over the images of a ground-truth cell-count bin
  (:data:`cellbench.metrics.COUNT_BINS`: ``6-10`` ... ``100+``).
* ``coco_map``, ``coco_ap50``, ``coco_ap75``, ``coco_ar50``, ``coco_ar75``
  (pycocotools), and ``seggal_accuracy``: the 18-methods paper's accuracy of a
  task, the mean of those five (:func:`cellbench.analysis.ranking.task_accuracy`).

:func:`compare_published` takes the published number and the evaluations of
one protocol entry, one per training seed. This run's value is a statistic
across the seeds (mean, median or max) of each seed's value. Its interval
covers both uncertainties (:mod:`cellbench.analysis.seeds` keeps them apart;
here they are combined on purpose, since a paper's number came from one
training run on one set of images): a two-level percentile bootstrap, each
resample drawing the seeds with replacement and then, for each drawn seed, its
images with replacement, recomputing the metric and the statistic across the
drawn seeds. With one seed it is the bootstrap over images; COCO figures have
no per-image parts here, so their interval is across seeds only (none with one
seed).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from cellbench.analysis.certainty import pooled_metric
from cellbench.analysis.ranking import task_accuracy
from cellbench.errors import DataError
from cellbench.metrics import COUNT_BINS, count_ratios, threshold_key

__all__ = [
    "COCO_METRICS",
    "RATIO_METRICS",
    "SEED_STATISTICS",
    "MetricSpec",
    "PublishedComparison",
    "compare_published",
    "metric_value",
    "parse_metric",
]

#: The per-instance ratios (from TP, FP and FN at a threshold) a metric name may use.
RATIO_METRICS: tuple[str, ...] = tuple(count_ratios())
#: The COCO figures (keys of a stored evaluation's ``coco`` summary) as metric names, and their words.
COCO_METRICS: dict[str, str] = {"coco_map": "map", "coco_ap50": "ap50", "coco_ap75": "ap75", "coco_ar50": "ar50",
                                "coco_ar75": "ar75"}
#: How a run's seeds are summarised to compare with a published number.
SEED_STATISTICS: tuple[str, ...] = ("mean", "median", "max")
SeedStatistic = Literal["mean", "median", "max"]
_IMAGE_STATISTICS = ("mean", "median", "std")
_NAME = re.compile(rf"^(?:(?P<stat>mean|median|std)_)?(?P<base>{'|'.join(RATIO_METRICS)})@(?P<t>[0-9.]+)"
                   r"(?:\[(?P<bin>[^\]]+)\])?$")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: what is computed, at which IoU threshold, aggregated how.

    ``kind``: ``pooled`` (counts summed over images), ``image`` (per image, then ``statistic`` over images),
    ``bin`` (per image, mean over one cell-count bin), ``coco`` (a COCO figure or the 18-methods accuracy).
    """

    name: str
    kind: Literal["pooled", "image", "bin", "coco"]
    base: str
    threshold: float | None = None
    statistic: str | None = None
    bin: str | None = None

    def words(self) -> str:
        """The quantity in words, for captions."""
        at = "" if self.threshold is None else f" at IoU {self.threshold:g}"
        if self.kind == "pooled":
            return f"{self.base}{at}, pooled over images"
        if self.kind == "image":
            return f"{self.statistic} over images of each image's {self.base}{at}"
        if self.kind == "bin":
            return f"mean {self.base}{at} over the images with {self.bin} ground-truth cells"
        if self.base == "seggal_accuracy":
            return "mean of COCO mAP, AP50, AP75, AR50, AR75 (18-methods accuracy)"
        return f"COCO {COCO_METRICS[self.base]} (pycocotools)"


def parse_metric(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of a published metric name; a :class:`DataError` listing the forms otherwise.

    >>> parse_metric("ap_dsb@0.75").kind, parse_metric("mean_f1@0.5[6-10]").bin, parse_metric("mean_dice").base
    ('pooled', '6-10', 'dice')
    """
    if not isinstance(name, str):
        raise DataError(f"a metric name must be a string, got {name!r}")
    if name in COCO_METRICS or name == "seggal_accuracy":
        return MetricSpec(name, "coco", name)
    found = re.fullmatch(r"(mean|median|std)_dice", name)
    if found:
        return MetricSpec(name, "image", "dice", statistic=found.group(1))
    found = _NAME.match(name)
    threshold = None
    if found:
        try:
            threshold = float(found.group("t"))
        except ValueError:
            threshold = None
    if not found or threshold is None or not 0 < threshold <= 1:
        bins = ", ".join(b for b, _, _ in COUNT_BINS)
        raise DataError(
            f"unknown metric {name!r}; metrics: {'|'.join(RATIO_METRICS)}@T (pooled), "
            f"mean|median|std_<that>@T (per image), mean_<that>@T[BIN] (BIN: {bins}), "
            f"mean|median|std_dice, {', '.join(COCO_METRICS)}, seggal_accuracy")
    stat, base, binned = found.group("stat"), found.group("base"), found.group("bin")
    if binned is not None:
        if stat != "mean" or binned not in {b for b, _, _ in COUNT_BINS}:
            raise DataError(f"metric {name!r}: a cell-count bin takes mean_<ratio>@T[BIN] with BIN one of "
                            f"{', '.join(b for b, _, _ in COUNT_BINS)}")
        return MetricSpec(name, "bin", base, threshold, "mean", binned)
    if stat is None:
        return MetricSpec(name, "pooled", base, threshold)
    return MetricSpec(name, "image", base, threshold, stat)


def _image_stat(values: np.ndarray, statistic: str) -> float:
    if values.size == 0 or (statistic == "std" and values.size < 2):
        return math.nan
    if statistic == "mean":
        return float(values.mean())
    if statistic == "median":
        return float(np.median(values))
    return float(values.std(ddof=1))


def _per_image(result: Mapping, spec: MetricSpec) -> np.ndarray | None:
    """The per-image data ``spec`` is computed from: TP / FP / FN rows (pooled) or the defined per-image values."""
    images = result.get("per_image")
    if not images:
        return None
    if spec.kind == "pooled":
        key = threshold_key(spec.threshold)
        rows = []
        for img in images:
            c = (img.get("by_iou") or {}).get(key)
            if not isinstance(c, Mapping):
                return None
            rows.append((c.get("tp", 0), c.get("fp", 0), c.get("fn", 0)))
        return np.array(rows, dtype=np.int64).reshape(-1, 3)
    bounds = next(((lo, hi) for b, lo, hi in COUNT_BINS if b == spec.bin), None)
    values = []
    for img in images:
        if bounds is not None and not bounds[0] <= img.get("n_gt", 0) <= bounds[1]:
            continue
        v = img.get("dice") if spec.base == "dice" else \
            ((img.get("by_iou") or {}).get(threshold_key(spec.threshold)) or {}).get(spec.base)
        if v is not None and not math.isnan(v):
            values.append(float(v))
    return np.array(values, dtype=np.float64)


def metric_value(result: Mapping, metric: str | MetricSpec) -> float | None:
    """The value of ``metric`` in a stored evaluation (``Evaluation.to_dict()``); None where it is undefined.

    >>> a = {"image": "a", "n_gt": 7, "dice": 0.9, "by_iou": {"0.5": {"tp": 3, "fp": 1, "fn": 0, "f1": 6 / 7}}}
    >>> b = {"image": "b", "n_gt": 2, "dice": 0.5, "by_iou": {"0.5": {"tp": 1, "fp": 0, "fn": 1, "f1": 2 / 3}}}
    >>> r = {"per_image": [a, b]}
    >>> round(metric_value(r, "f1@0.5"), 4), round(metric_value(r, "mean_f1@0.5"), 4), metric_value(r, "mean_dice")
    (0.8, 0.7619, 0.7)
    >>> round(metric_value(r, "mean_f1@0.5[6-10]"), 4), metric_value(r, "coco_map")
    (0.8571, None)
    """
    spec = metric if isinstance(metric, MetricSpec) else parse_metric(metric)
    if spec.kind == "coco":
        coco = result.get("coco") or {}
        if spec.base == "seggal_accuracy":
            return task_accuracy(coco)
        v = coco.get(COCO_METRICS[spec.base])
        return None if v is None else float(v)
    data = _per_image(result, spec)
    if data is None:
        return None
    if spec.kind == "pooled":
        v = float(pooled_metric(data.sum(axis=0), spec.base))
    else:
        v = _image_stat(data, spec.statistic)
    return None if math.isnan(v) else v


def _reduce(spec: MetricSpec, resampled: np.ndarray) -> np.ndarray:
    """The metric of each resample: (..., n_images, 3) counts summed, or (..., n_images) values reduced."""
    if spec.kind == "pooled":
        return pooled_metric(resampled.sum(axis=-2), spec.base)
    if resampled.shape[-1] == 0:
        return np.full(resampled.shape[:-1], np.nan)
    if spec.statistic == "mean":
        return resampled.mean(axis=-1)
    if spec.statistic == "median":
        return np.median(resampled, axis=-1)
    if resampled.shape[-1] < 2:
        return np.full(resampled.shape[:-1], np.nan)
    return resampled.std(axis=-1, ddof=1)


def _across(values: np.ndarray, statistic: str) -> np.ndarray:
    """The seed statistic along the last axis, NaN where every value is NaN."""
    with np.errstate(all="ignore"):
        defined = ~np.isnan(values).all(axis=-1)
        out = np.full(values.shape[:-1], np.nan)
        if defined.any():
            fn = {"mean": np.nanmean, "median": np.nanmedian, "max": np.nanmax}[statistic]
            out[defined] = fn(values[defined], axis=-1)
    return out


def _seed_statistic(values: Sequence[float], statistic: str) -> float | None:
    if not values:
        return None
    return {"mean": statistics.fmean, "median": statistics.median, "max": max}[statistic](values)


@dataclass(frozen=True)
class PublishedComparison:
    """One published number beside this run's value for the same entry and metric.

    ``published`` and ``measured`` are fractions (a percent published value divided by 100); ``difference`` is
    measured - published. ``inside``: the published value lies in [low, high] (relation ``=``) or, for a lower
    bound (``>``), the interval reaches above it; None without an interval or a number.
    """

    metric: str
    published: float | None
    relation: str
    statistic: str
    seeds: tuple[int, ...]
    seed_values: tuple[float | None, ...]
    measured: float | None
    low: float | None
    high: float | None
    n_images: int
    interval: str
    difference: float | None
    inside: bool | None

    def to_dict(self) -> dict:
        return asdict(self)


def _interval_words(n_seeds: int, per_image: bool, n_boot: int, level: float, seed: int, statistic: str) -> str:
    pct = f"{100 * level:g} %"
    if not per_image:
        if n_seeds < 2:
            return "none: one seed and no per-image parts"
        return f"{pct} percentile bootstrap across the {n_seeds} seeds ({n_boot} resamples, numpy default_rng({seed}))"
    if n_seeds < 2:
        return f"{pct} percentile bootstrap over images ({n_boot} resamples, numpy default_rng({seed}))"
    return (f"{pct} two-level percentile bootstrap: seeds, then each drawn seed's images, with replacement, "
            f"{statistic} across the drawn seeds ({n_boot} resamples, numpy default_rng({seed}))")


def compare_published(
    published: float | None,
    metric: str,
    results_by_seed: Mapping[int, Mapping],
    *,
    statistic: SeedStatistic = "mean",
    relation: Literal["=", ">"] = "=",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PublishedComparison:
    """``published`` (a fraction, or None) beside ``metric`` of one entry's evaluations, one per training seed.

    See the module docstring for the statistic and the interval. An empty
    ``results_by_seed`` (the entry did not run, or failed) gives no value.

    >>> counts = [{"tp": 8, "fp": 2, "fn": 1}, {"tp": 5, "fp": 0, "fn": 4}]
    >>> r = {"per_image": [{"by_iou": {"0.5": c}} for c in counts]}
    >>> c = compare_published(0.75, "f1@0.5", {0: r}, n_boot=200)
    >>> round(c.measured, 4), round(c.difference, 4), c.inside, c.low <= c.measured <= c.high
    (0.7879, 0.0379, True, True)
    """
    if statistic not in SEED_STATISTICS:
        raise DataError(f"statistic must be one of {', '.join(SEED_STATISTICS)}, got {statistic!r}")
    if relation not in ("=", ">"):
        raise DataError(f"relation must be '=' or '>', got {relation!r}")
    if n_boot < 1 or not 0 < level < 1:
        raise DataError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    spec = parse_metric(metric)
    seeds = tuple(sorted(results_by_seed))
    values = tuple(metric_value(results_by_seed[s], spec) for s in seeds)
    defined = [v for v in values if v is not None]
    measured = _seed_statistic(defined, statistic)
    parts = [None if spec.kind == "coco" else _per_image(results_by_seed[s], spec) for s in seeds]
    per_image = bool(parts) and all(p is not None for p in parts)
    low = high = None
    n_images = max((len(p) for p in parts if p is not None), default=0)
    if defined and (per_image or len(seeds) > 1):
        rng = np.random.default_rng(seed)
        k = len(seeds)
        drawn = rng.integers(0, k, size=(n_boot, k))  # the seeds of each resample
        boot = np.empty((n_boot, k))
        for s in range(k):
            if per_image and len(parts[s]):
                n = len(parts[s])
                picks = rng.integers(0, n, size=(n_boot, k, n))
                per_seed = _reduce(spec, parts[s][picks])
            else:
                v = values[s]
                per_seed = np.full((n_boot, k), np.nan if v is None else v)
            boot = np.where(drawn == s, per_seed, boot)
        stat = _across(boot, statistic)
        stat = stat[~np.isnan(stat)]
        if stat.size:
            low, high = (float(x) for x in np.percentile(stat, [50 * (1 - level), 50 * (1 + level)]))
    difference = None if measured is None or published is None else measured - published
    inside = None
    if low is not None and published is not None:
        inside = high > published if relation == ">" else low <= published <= high
    return PublishedComparison(
        metric=spec.name, published=published, relation=relation, statistic=statistic, seeds=seeds,
        seed_values=values, measured=measured, low=low, high=high, n_images=n_images,
        interval=_interval_words(len(seeds), per_image, n_boot, level, seed, statistic),
        difference=difference, inside=inside,
    )
