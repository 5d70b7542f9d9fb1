"""Instance segmentation metrics: matching counts, ap_dsb, PQ, Dice, COCO; pooled and per image.

Names say what is computed: ``ap_dsb`` is TP / (TP + FP + FN), the "AP" of
Cellpose, CellSeg1 and the Glioma C6 paper; ``coco_map``-style figures live
under ``coco``. See :mod:`cellbench.metrics.evaluate` for aggregation and
edge cases. Overlaps and the matching rule (IoU >= t) live one layer down, in
:mod:`cellbench.matching`, which the methods tune with too; they are
re-exported here.
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
from cellbench.metrics.boundary import drop_boundary, touches_frame
from cellbench.metrics.coco import COCO_IOU_THRESHOLDS, CocoResult, coco_image, coco_summary
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

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "COUNT_BINS",
    "DEFAULT_THRESHOLDS",
    "GLIOMA_THRESHOLDS",
    "NEURIPS_THRESHOLDS",
    "REPORT_THRESHOLDS",
    "CocoResult",
    "Counts",
    "Evaluation",
    "Evaluator",
    "ImageResult",
    "Overlaps",
    "coco_image",
    "coco_summary",
    "drop_boundary",
    "evaluate",
    "evaluate_image",
    "match",
    "match_labels",
    "match_pairs",
    "overlaps_from_instances",
    "overlaps_from_labels",
    "pooled",
    "threshold_key",
    "touches_frame",
]
