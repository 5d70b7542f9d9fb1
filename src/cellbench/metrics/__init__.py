"""Instance segmentation metrics: matching counts, ap_dsb, PQ, Dice, AJI, AJI+, COCO; pooled and per image.

Names say what is computed: ``ap_dsb`` is TP / (TP + FP + FN), the "AP" of
Cellpose, CellSeg1 and the Glioma C6 paper; ``coco_map``-style figures live
under ``coco``. See :mod:`cellbench.metrics.evaluate` for aggregation and
edge cases. Overlaps and the matching rule (IoU >= t) live one layer down, in
:mod:`cellbench.matching`, which the methods tune with too; they are
re-exported here. Each metric family is one module and one
:class:`~cellbench.metrics.base.Metric` class, listed in :data:`METRICS`.
"""

from cellbench.matching import (
    Counts,
    Overlaps,
    match,
    match_labels,
    match_pairs,
    overlaps_from_instances,
    overlaps_from_labels,
    pooled,
)
from cellbench.metrics.aggregate import PerImageFile, read_records
from cellbench.metrics.aji import AggregatedJaccard, AggregatedJaccardPlus, aji_parts, aji_plus_parts
from cellbench.metrics.base import ImagePair, Metric
from cellbench.metrics.boundary import drop_boundary, touches_frame
from cellbench.metrics.coco import COCO_IOU_THRESHOLDS, CocoMetric, CocoResult, coco_image, coco_summary
from cellbench.metrics.dice import PixelDice
from cellbench.metrics.evaluate import (
    COUNT_BINS,
    DEFAULT_THRESHOLDS,
    GLIOMA_THRESHOLDS,
    NEURIPS_THRESHOLDS,
    REPORT_THRESHOLDS,
    Evaluation,
    Evaluator,
    ImageResult,
    evaluate,
    evaluate_image,
    threshold_key,
)
from cellbench.metrics.matched_counts import MatchedCounts
from cellbench.metrics.panoptic import CanonicalPQ
from cellbench.metrics.registry import DEFAULT_METRICS, METRICS, count_ratios, metric_named, resolve_metrics

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "COUNT_BINS",
    "DEFAULT_METRICS",
    "DEFAULT_THRESHOLDS",
    "GLIOMA_THRESHOLDS",
    "METRICS",
    "NEURIPS_THRESHOLDS",
    "REPORT_THRESHOLDS",
    "AggregatedJaccard",
    "AggregatedJaccardPlus",
    "CanonicalPQ",
    "CocoMetric",
    "CocoResult",
    "Counts",
    "Evaluation",
    "Evaluator",
    "ImagePair",
    "ImageResult",
    "MatchedCounts",
    "Metric",
    "Overlaps",
    "PerImageFile",
    "PixelDice",
    "aji_parts",
    "aji_plus_parts",
    "coco_image",
    "coco_summary",
    "count_ratios",
    "drop_boundary",
    "evaluate",
    "evaluate_image",
    "match",
    "match_labels",
    "match_pairs",
    "metric_named",
    "overlaps_from_instances",
    "overlaps_from_labels",
    "pooled",
    "read_records",
    "resolve_metrics",
    "threshold_key",
    "touches_frame",
]
