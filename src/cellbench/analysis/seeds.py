"""Scores across training seeds: n, mean and sample sd of each headline metric, per method and setting.

Two uncertainties, kept apart:

* **across seeds** (this module): one method trained with seeds 0, 1, 2 ...
  and scored on the same images; the spread says how much a score depends on
  which training run made the model. The sd is the sample sd (ddof 1, divided
  by n - 1), undefined (``None``) with one seed.
* **across images** (:func:`cellbench.analysis.bootstrap_interval`): one
  trained model, images resampled with replacement; the interval says how much
  the score depends on which images were drawn.

An aggregate holds both: the seed spread of each metric, and the bootstrap
interval of **one** seed's evaluation: the lowest seed whose row carries
per-image counts, named in ``interval_seed``. Averaging the seeds' interval
bounds would describe neither uncertainty, and bootstrapping all seeds' images
together would count retrained models as more images.

The input is plain score rows (dicts), so a run's evaluations and ``cellbench
demo``'s score list go through the same function::

    aggregates = aggregate_seeds(rows)   # rows: {"dataset", "method", "regime", "split", "ground_truth",
                                         #        "seed", "f1@0.5", "f1@0.75", "ap_dsb@0.5", "coco_map", ...}
    table = seed_rows(aggregates)        # one dict per method and setting, means under the metric names
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from cellbench.analysis.certainty import BootstrapInterval, Metric, bootstrap_interval, image_counts
from cellbench.errors import DataError

__all__ = [
    "SEED_GROUP_FIELDS",
    "SEED_METRICS",
    "SeedAggregate",
    "SeedSpread",
    "aggregate_seeds",
    "mean_sd_text",
    "seed_rows",
    "seed_spread",
]

#: The fields of a score row that say what was scored; rows equal in all of them differ only in the seed.
#: A row without one of them has ``None`` there.
SEED_GROUP_FIELDS: tuple[str, ...] = (
    "dataset", "task", "method", "regime", "split", "ground_truth", "flatten_policy", "boundary_px",
)
#: The metrics aggregated by default: pooled F1 at IoU 0.5 and 0.75, ap_dsb = TP / (TP + FP + FN) at 0.5, COCO mAP.
SEED_METRICS: tuple[str, ...] = ("f1@0.5", "f1@0.75", "ap_dsb@0.5", "coco_map")


@dataclass(frozen=True)
class SeedSpread:
    """One metric across seeds: the seeds with a defined value, their values, n, mean and sample sd (ddof 1).

    ``sd`` is ``None`` with fewer than two values, ``mean`` with none.
    """

    metric: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    n_seeds: int
    mean: float | None
    sd: float | None

    def text(self, *, decimals: int = 3, percent: bool = False) -> str:
        """``"mean ± sd"`` as :func:`mean_sd_text` writes it."""
        return mean_sd_text(self.mean, self.sd, decimals=decimals, percent=percent)

    def to_dict(self) -> dict:
        return asdict(self)


def seed_spread(metric: str, values_by_seed: Mapping[int, float | None]) -> SeedSpread:
    """n, mean and sample sd (ddof 1) of ``values_by_seed``; ``None`` and NaN values are left out.

    >>> s = seed_spread("f1@0.5", {2: 0.7, 0: 0.5, 1: 0.6})
    >>> s.seeds, s.n_seeds, round(s.mean, 12), round(s.sd, 12)
    ((0, 1, 2), 3, 0.6, 0.1)
    >>> seed_spread("f1@0.5", {0: 0.8, 1: None}).sd is None
    True
    """
    defined = sorted((int(seed), float(v)) for seed, v in values_by_seed.items()
                     if v is not None and not math.isnan(v))
    values = tuple(v for _, v in defined)
    return SeedSpread(
        metric=metric,
        seeds=tuple(seed for seed, _ in defined),
        values=values,
        n_seeds=len(values),
        mean=statistics.fmean(values) if values else None,
        sd=statistics.stdev(values) if len(values) > 1 else None,
    )


def mean_sd_text(mean: float | None, sd: float | None, *, decimals: int = 3, percent: bool = False) -> str:
    """``"mean ± sd"`` for a table cell; ``–`` for an undefined sd (one seed), ``n/a`` for no value.

    ``percent`` multiplies both by 100.

    >>> mean_sd_text(0.6, 0.1)
    '0.600 ± 0.100'
    >>> mean_sd_text(0.8123, None, decimals=1, percent=True)
    '81.2 ± –'
    >>> mean_sd_text(None, None)
    'n/a'
    """
    if mean is None or math.isnan(mean):
        return "n/a"
    scale = 100.0 if percent else 1.0
    spread = "–" if sd is None or math.isnan(sd) else f"{scale * sd:.{decimals}f}"
    return f"{scale * mean:.{decimals}f} ± {spread}"


@dataclass(frozen=True)
class SeedAggregate:
    """One method and setting across seeds: each metric's spread, and one seed's bootstrap interval over images.

    ``seeds`` lists every seed with a row (a metric's own ``seeds`` only those
    where it is defined). ``interval`` is the percentile bootstrap interval over
    images of the evaluation of seed ``interval_seed`` (see the module docstring),
    ``None`` when no row carried per-image counts.
    """

    dataset: str | None
    task: str | None
    method: str | None
    regime: str | None
    split: str | None
    ground_truth: str | None
    flatten_policy: str | None
    boundary_px: int | None
    seeds: tuple[int, ...]
    metrics: tuple[SeedSpread, ...]
    interval: BootstrapInterval | None = None
    interval_seed: int | None = None

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def model(self) -> str:
        """The method and regime in words, as the report's columns name them."""
        return f"{self.method} ({self.regime})"

    def spread(self, metric: str) -> SeedSpread:
        """The spread of ``metric`` (one of the names aggregated)."""
        for s in self.metrics:
            if s.metric == metric:
                return s
        raise DataError(f"metric {metric!r} was not aggregated; these were: "
                        f"{', '.join(s.metric for s in self.metrics)}")

    def to_dict(self) -> dict:
        return asdict(self)


def _group_key(row: Mapping, k: int) -> tuple:
    if not isinstance(row, Mapping):
        raise DataError(f"score row {k} is a {type(row).__name__}, not a mapping")
    return tuple(row.get(f) for f in SEED_GROUP_FIELDS)


def _seed(row: Mapping, k: int) -> int:
    seed = row.get("seed")
    integer = (isinstance(seed, numbers.Real) and not isinstance(seed, bool) and math.isfinite(seed)
               and int(seed) == seed)
    if not integer:
        raise DataError(f"score row {k} ({row.get('method')!r}, {row.get('dataset')!r}) has no integer 'seed': "
                        f"{seed!r}")
    return int(seed)


def _value(row: Mapping, metric: str, k: int) -> float | None:
    v = row.get(metric)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise DataError(f"score row {k}: {metric} must be a number or None, got {v!r}")
    return float(v)


def _interval(rows: Sequence[tuple[int, Mapping]], metric: Metric, threshold: float, n_boot: int, level: float,
              boot_seed: int) -> tuple[BootstrapInterval | None, int | None]:
    """The bootstrap interval of the lowest seed whose row has per-image counts at ``threshold``."""
    for seed, row in rows:
        per_image = row.get("per_image")
        if not per_image:
            continue
        try:
            counts = image_counts(per_image, threshold)
        except DataError:  # this seed's evaluation lacks the threshold; a later one may have it
            continue
        return bootstrap_interval(counts, metric, n_boot=n_boot, level=level, seed=boot_seed), seed
    return None, None


def aggregate_seeds(
    rows: Iterable[Mapping],
    *,
    metrics: Sequence[str] = SEED_METRICS,
    interval_metric: Metric | None = "f1",
    interval_threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    boot_seed: int = 0,
) -> tuple[SeedAggregate, ...]:
    """Score rows grouped by :data:`SEED_GROUP_FIELDS`, each group's ``metrics`` summarised across seeds.

    A row is a mapping with an integer ``seed``, the group fields it knows
    (missing ones count as ``None``) and a number or ``None`` under each name
    of ``metrics`` (missing: ``None``). A row may carry ``per_image``, a stored
    evaluation's per-image list (``Evaluation.to_dict()["per_image"]``): the
    lowest seed that has one gets the bootstrap interval over images of
    ``interval_metric`` at IoU ``interval_threshold`` (``n_boot`` resamples,
    ``level``, numpy seed ``boot_seed``); ``interval_metric=None`` skips it.
    Groups come in the order of their first row; two rows of one group with the
    same seed are a :class:`DataError` (something that tells them apart is not
    a group field).

    >>> rows = [{"dataset": "dsb", "method": "unet", "regime": "all", "split": "test", "ground_truth": "overlap",
    ...          "seed": s, "f1@0.5": f1} for s, f1 in ((0, 0.5), (1, 0.6), (2, 0.7))]
    >>> (agg,) = aggregate_seeds(rows, metrics=("f1@0.5",))
    >>> agg.model, agg.seeds, agg.spread("f1@0.5").text()
    ('unet (all)', (0, 1, 2), '0.600 ± 0.100')
    """
    groups: dict[tuple, dict[int, tuple[int, Mapping]]] = {}
    for k, row in enumerate(rows):
        key, seed = _group_key(row, k), _seed(row, k)
        group = groups.setdefault(key, {})
        if seed in group:
            named = ", ".join(f"{f}={v!r}" for f, v in zip(SEED_GROUP_FIELDS, key) if v is not None)
            raise DataError(f"score rows {group[seed][0]} and {k} both have seed {seed} for {named}")
        group[seed] = (k, row)
    out = []
    for key, by_seed in groups.items():
        ordered = [(seed, by_seed[seed][1]) for seed in sorted(by_seed)]
        spreads = tuple(seed_spread(m, {seed: _value(row, m, by_seed[seed][0]) for seed, row in ordered})
                        for m in metrics)
        interval, interval_seed = (None, None) if interval_metric is None else _interval(
            ordered, interval_metric, interval_threshold, n_boot, level, boot_seed)
        out.append(SeedAggregate(*key, seeds=tuple(s for s, _ in ordered), metrics=spreads, interval=interval,
                                 interval_seed=interval_seed))
    return tuple(out)


def seed_rows(aggregates: Iterable[SeedAggregate]) -> list[dict]:
    """One flat dict per aggregate: the group fields, ``seeds``, ``n_seeds``, and for each metric ``m`` the mean
    under ``m`` (so code reading per-seed rows reads these too), ``m_sd`` and ``m_n``; then the interval.

    >>> rows = [{"dataset": "d", "method": "m", "regime": "r", "seed": 0, "f1@0.5": 0.8}]
    >>> r = seed_rows(aggregate_seeds(rows, metrics=("f1@0.5",)))[0]
    >>> r["f1@0.5"], r["f1@0.5_sd"], r["f1@0.5_n"], r["seeds"]
    (0.8, None, 1, [0])
    """
    out = []
    for a in aggregates:
        row: dict = {f: getattr(a, f) for f in SEED_GROUP_FIELDS}
        row |= {"seeds": list(a.seeds), "n_seeds": a.n_seeds}
        for s in a.metrics:
            row |= {s.metric: s.mean, f"{s.metric}_sd": s.sd, f"{s.metric}_n": s.n_seeds}
        iv = a.interval
        row |= {"interval_seed": a.interval_seed, "interval_metric": iv and iv.metric,
                "interval_threshold": iv and iv.threshold, "interval_estimate": iv and iv.estimate,
                "interval_low": iv and iv.low, "interval_high": iv and iv.high, "interval_images": iv and iv.n_images}
        out.append(row)
    return out
