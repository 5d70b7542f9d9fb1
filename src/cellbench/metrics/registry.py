"""The metric families cellbench knows, by name: what ``--metrics`` offers and the report can name.

The evaluator, ``cellbench evaluate --metrics``, the report and the
certainty analysis read this list and nothing else. A new metric is one
module with a :class:`~cellbench.metrics.base.Metric` subclass, one line in
:data:`METRICS`, and its test. The list is a constant: importing a metric
registers nothing, and a metric of one's own is passed to
:func:`~cellbench.metrics.evaluate` as an object (``metrics=[MyMetric()]``).

>>> [m.name for m in resolve_metrics(["aji"], coco=True)]
['matching', 'aji', 'coco']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cellbench.errors import DataError
from cellbench.metrics.aji import AggregatedJaccard, AggregatedJaccardPlus
from cellbench.metrics.base import Metric
from cellbench.metrics.boundary_f import BoundaryF
from cellbench.metrics.coco import CocoMetric
from cellbench.metrics.dice import PixelDice
from cellbench.metrics.matched_counts import MatchedCounts
from cellbench.metrics.panoptic import CanonicalPQ

__all__ = ["DEFAULT_METRICS", "METRICS", "count_ratios", "metric_named", "resolve_metrics"]

#: Every metric family, in the order results list them.
METRICS: tuple[type[Metric], ...] = (
    MatchedCounts,
    PixelDice,
    AggregatedJaccard,
    AggregatedJaccardPlus,
    CanonicalPQ,
    BoundaryF,
    CocoMetric,
)
#: What is scored unless told otherwise. The matching counts are always scored (every aggregation rests on them).
DEFAULT_METRICS: tuple[str, ...] = ("matching", "dice")


def metric_named(name: str) -> type[Metric]:
    """The registered family called ``name``; a :class:`DataError` listing the names otherwise.

    >>> metric_named("aji_plus").title
    'AJI+ (Graham et al. 2019, HoVer-Net get_fast_aji_plus)'
    """
    for cls in METRICS:
        if cls.name == name:
            return cls
    raise DataError(f"unknown metric {name!r}; metrics: {', '.join(m.name for m in METRICS)}")


def resolve_metrics(
    metrics: Sequence[str | Metric] | None = None, *, coco: bool = False, max_dets: int = 3000
) -> tuple[Metric, ...]:
    """The metric objects to score: ``metrics`` (names or objects; :data:`DEFAULT_METRICS` when None),
    each family once, with the matching counts (put first when not named).

    ``coco=True`` adds the COCO metric and ``max_dets`` is its option (both
    shorthands of ``metrics=[..., CocoMetric(max_dets=...)]``).
    """
    wanted = list(DEFAULT_METRICS if metrics is None else metrics)
    if coco and not any((m if isinstance(m, str) else m.name) == CocoMetric.name for m in wanted):
        wanted.append(CocoMetric.name)
    out: list[Metric] = []
    for m in wanted:
        if isinstance(m, str):
            cls = metric_named(m)
            options = {f.name for f in dataclasses.fields(cls)}
            m = cls(**({"max_dets": int(max_dets)} if "max_dets" in options else {}))
        elif not isinstance(m, Metric):
            raise DataError(f"a metric is a name or a cellbench.metrics.Metric, got {m!r}")
        if any(o.name == m.name for o in out):
            raise DataError(f"metric {m.name!r} is named twice")
        out.append(m)
    if not any(m.name == MatchedCounts.name for m in out):
        out.insert(0, MatchedCounts())
    return tuple(out)


def count_ratios() -> dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Every registered value that is a ratio of summed TP / FP / FN, with its (numerator, denominator) weights.

    >>> sorted(count_ratios())
    ['ap_dsb', 'f1', 'precision', 'recall']
    """
    return {name: weights for cls in METRICS for name, weights in cls.ratios.items()}
