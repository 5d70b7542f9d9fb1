"""Certainty of pooled scores: bootstrap intervals over images and paired tests between two methods.

None of the seed papers says how certain a score or a difference is. Here:

* :func:`bootstrap_interval`: a percentile bootstrap interval of a **pooled**
  metric. Images are resampled with replacement (``n_boot`` resamples of
  ``n`` images, ``numpy.random.default_rng(seed).integers(0, n, size=(n_boot, n))``),
  TP, FP and FN are summed over each resample and the metric recomputed from
  the sums; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
  percentiles (numpy's linear interpolation) of the resampled values.
* :func:`paired_comparison`: two methods scored on the same images. The
  difference a - b of the pooled metric is bootstrapped with the **same**
  resampled images for both (paired), with its percentile interval and a
  two-sided bootstrap p-value; and the Wilcoxon signed-rank test
  (``scipy.stats.wilcoxon``) on the per-image F1.

Metrics are the registered ratios of TP, FP and FN
(:func:`cellbench.metrics.count_ratios`, each defined once as weights of TP, FP
and FN): ``precision``, ``recall``, ``f1`` = 2TP / (2TP + FP + FN), ``ap_dsb`` =
TP / (TP + FP + FN); a zero denominator gives 0, and a resample with no TP, FP
or FN at all gives an undefined value, left out of the percentiles (and
counted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
import numpy as np
from scipy import stats

from cellbench.errors import DataError
from cellbench.metrics import count_ratios, threshold_key

__all__ = [
    "CERTAINTY_METRICS",
    "BootstrapInterval",
    "ImageCounts",
    "PairedComparison",
    "bootstrap_interval",
    "image_counts",
    "paired_comparison",
    "pooled_metric",
]

#: A name of :data:`CERTAINTY_METRICS`.
Metric = str
_RATIOS = count_ratios()
#: The pooled metrics the bootstrap recomputes from summed counts: every registered ratio of TP, FP and FN.
CERTAINTY_METRICS: tuple[str, ...] = tuple(_RATIOS)


@dataclass(frozen=True)
class ImageCounts:
    """TP, FP, FN per image at one IoU threshold (``counts`` has shape (n_images, 3))."""

    names: tuple[str, ...]
    counts: np.ndarray
    threshold: float | None = None


def image_counts(per_image: Sequence[Mapping], threshold: float) -> ImageCounts:
    """The counts at ``threshold`` of a stored evaluation's ``per_image`` list (``Evaluation.to_dict()``).

    >>> ic = image_counts([{"image": "a", "by_iou": {"0.5": {"tp": 3, "fp": 1, "fn": 0}}}], 0.5)
    >>> ic.names, ic.counts.tolist()
    (('a',), [[3, 1, 0]])
    """
    key = threshold_key(threshold)
    names, rows = [], []
    for k, img in enumerate(per_image):
        name = str(img.get("image", f"image_{k}"))
        c = (img.get("by_iou") or {}).get(key)
        if not isinstance(c, Mapping) or any(c.get(x) is None for x in ("tp", "fp", "fn")):
            raise DataError(f"image {name!r} has no TP / FP / FN at IoU {key}")
        names.append(name)
        rows.append((int(c["tp"]), int(c["fp"]), int(c["fn"])))
    return ImageCounts(tuple(names), np.array(rows, dtype=np.int64).reshape(-1, 3), float(threshold))


def _as_counts(x) -> tuple[np.ndarray, float | None]:
    if isinstance(x, ImageCounts):
        return x.counts, x.threshold
    if len(x) and isinstance(x[0], Mapping):
        arr = np.array([(r["tp"], r["fp"], r["fn"]) for r in x], dtype=np.int64)
    else:
        arr = np.asarray(x, dtype=np.int64)
    if arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] != 3 or (arr < 0).any():
        raise DataError(f"per-image counts must be (n_images, 3) non-negative TP / FP / FN, got shape {arr.shape}")
    return arr, None


def _check(metric: str, n_boot: int, level: float) -> None:
    if metric not in CERTAINTY_METRICS:
        raise DataError(f"metric must be one of {', '.join(CERTAINTY_METRICS)}, got {metric!r}")
    if n_boot < 1:
        raise DataError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise DataError(f"level must be in (0, 1), got {level}")


def pooled_metric(sums: np.ndarray, metric: str) -> np.ndarray:
    """The metric from summed (..., 3) TP / FP / FN; 0 for a zero denominator, NaN when all three are 0."""
    counts = np.asarray(sums).astype(np.float64)
    num, den = (counts @ np.array(weights, dtype=np.float64) for weights in _RATIOS[metric])
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return np.where(counts.sum(axis=-1) > 0, value, np.nan)


def _resample(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentiles(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return None, None
    lo, hi = np.percentile(defined, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _none_if_nan(v) -> float | None:
    return None if v is None or np.isnan(v) else float(v)


@dataclass(frozen=True)
class BootstrapInterval:
    """A pooled metric with its percentile bootstrap interval over images."""

    metric: str
    estimate: float | None
    low: float | None
    high: float | None
    n_images: int
    n_boot: int
    level: float
    seed: int
    method: str
    threshold: float | None = None
    n_undefined: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_interval(
    per_image_counts, metric: Metric, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> BootstrapInterval:
    """Percentile bootstrap interval of a pooled metric, resampling images with replacement.

    ``per_image_counts``: an :class:`ImageCounts` (see :func:`image_counts`), a
    sequence of ``{"tp", "fp", "fn"}`` mappings or an (n_images, 3) array.

    >>> r = bootstrap_interval([[8, 2, 1], [5, 0, 4], [9, 1, 1]], "f1", n_boot=200, seed=1)
    >>> round(r.estimate, 4), r.low <= r.estimate <= r.high, r.n_images
    (0.8302, True, 3)
    """
    _check(metric, n_boot, level)
    counts, threshold = _as_counts(per_image_counts)
    n = len(counts)
    method = (f"percentile bootstrap over images: {n_boot} resamples of the {n} images with replacement "
              f"(numpy default_rng({seed})), {metric} recomputed from the summed TP / FP / FN of each; "
              f"{100 * level:g} % interval")
    if n == 0:
        return BootstrapInterval(metric, None, None, None, 0, n_boot, level, seed, method, threshold)
    estimate = _none_if_nan(pooled_metric(counts.sum(axis=0), metric))
    boot = pooled_metric(counts[_resample(n, n_boot, seed)].sum(axis=1), metric)
    low, high = _percentiles(boot, level)
    return BootstrapInterval(metric, estimate, low, high, n, n_boot, level, seed, method, threshold,
                             int(np.isnan(boot).sum()))


@dataclass(frozen=True)
class PairedComparison:
    """Method a against method b on the same images: pooled difference a - b, its interval and two tests."""

    metric: str
    threshold: float
    n_images: int
    estimate_a: float | None
    estimate_b: float | None
    difference: float | None
    low: float | None
    high: float | None
    p_bootstrap: float | None
    wilcoxon_statistic: float | None
    p_wilcoxon: float
    n_wilcoxon: int
    wilcoxon_note: str
    n_boot: int
    level: float
    seed: int
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def _aligned(a_per_image: Sequence[Mapping], b_per_image: Sequence[Mapping], threshold: float, names: tuple[str, str]):
    a, b = image_counts(a_per_image, threshold), image_counts(b_per_image, threshold)
    if len(set(a.names)) != len(a.names) or len(set(b.names)) != len(b.names):
        raise DataError(f"{names[0]} or {names[1]} lists an image twice")
    if set(a.names) != set(b.names):
        only_a, only_b = sorted(set(a.names) - set(b.names)), sorted(set(b.names) - set(a.names))
        raise DataError(f"{names[0]} and {names[1]} are not scored on the same images: only in {names[0]}: "
                        f"{only_a[:5]}{' ...' if len(only_a) > 5 else ''} ({len(only_a)}); only in {names[1]}: "
                        f"{only_b[:5]}{' ...' if len(only_b) > 5 else ''} ({len(only_b)})")
    order = {name: k for k, name in enumerate(b.names)}
    return a.counts, b.counts[[order[name] for name in a.names]]


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float, int, str]:
    """Wilcoxon signed-rank on per-image F1; images where either F1 is undefined (nothing to find or find) left out."""
    fa, fb = pooled_metric(a, "f1"), pooled_metric(b, "f1")
    keep = ~(np.isnan(fa) | np.isnan(fb))
    fa, fb = fa[keep], fb[keep]
    n_nonzero = int(np.count_nonzero(fa - fb))
    if n_nonzero == 0:
        return None, 1.0, int(keep.sum()), "every per-image F1 difference is 0: no evidence of a difference, p = 1"
    res = stats.wilcoxon(fa, fb)
    return float(res.statistic), float(res.pvalue), int(keep.sum()), (
        f"scipy.stats.wilcoxon, two-sided, zero differences dropped ({n_nonzero} non-zero of {int(keep.sum())})")


def paired_comparison(
    a_per_image: Sequence[Mapping],
    b_per_image: Sequence[Mapping],
    metric: Metric,
    threshold: float,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    names: tuple[str, str] = ("a", "b"),
) -> PairedComparison:
    """Pooled ``metric`` of a minus b on the same images: paired bootstrap and Wilcoxon signed-rank on per-image F1.

    ``a_per_image`` / ``b_per_image`` are stored evaluations' ``per_image``
    lists; images are matched by name and must be the same set (else
    :class:`DataError` naming both ``names``). The bootstrap resamples image
    indices once and applies them to both methods. Its two-sided p-value is
    ``min(1, 2 min((#{d* <= 0} + 1) / (n_boot + 1), (#{d* >= 0} + 1) / (n_boot + 1)))``
    over the defined resampled differences d* (1 when a and b are identical).

    >>> a = [{"image": i, "by_iou": {"0.5": {"tp": 9, "fp": 1, "fn": 1}}} for i in "pqrs"]
    >>> r = paired_comparison(a, a, "f1", 0.5, n_boot=100)
    >>> r.difference, r.p_bootstrap, r.p_wilcoxon
    (0.0, 1.0, 1.0)
    """
    _check(metric, n_boot, level)
    ca, cb = _aligned(a_per_image, b_per_image, threshold, names)
    n = len(ca)
    est_a, est_b = (_none_if_nan(pooled_metric(c.sum(axis=0), metric)) for c in (ca, cb))
    diff = None if est_a is None or est_b is None else est_a - est_b
    low = high = p_boot = None
    if n:
        idx = _resample(n, n_boot, seed)
        d = pooled_metric(ca[idx].sum(axis=1), metric) - pooled_metric(cb[idx].sum(axis=1), metric)
        low, high = _percentiles(d, level)
        d = d[~np.isnan(d)]
        if d.size:
            tail = min(np.count_nonzero(d <= 0), np.count_nonzero(d >= 0))
            p_boot = float(min(1.0, 2 * (tail + 1) / (d.size + 1)))
    stat, p_w, n_w, note = _wilcoxon(ca, cb)
    method = (f"paired percentile bootstrap over images: {n_boot} resamples of the {n} images with replacement "
              f"(numpy default_rng({seed})), the same images for both methods, pooled {metric} at IoU "
              f"{threshold_key(threshold)} of a minus b from the summed TP / FP / FN; {100 * level:g} % interval; "
              f"two-sided bootstrap p = 2 x the smaller tail share of resampled differences at or beyond 0 "
              f"(+1 correction); Wilcoxon signed-rank on per-image F1")
    return PairedComparison(metric, float(threshold), n, est_a, est_b, diff, low, high, p_boot, stat, p_w, n_w, note,
                            n_boot, level, seed, method)
