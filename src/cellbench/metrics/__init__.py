"""Instance segmentation metrics: matching counts, ap_dsb, PQ, Dice, COCO; pooled and per image.

Names say what is computed: ``ap_dsb`` is TP / (TP + FP + FN), the "AP" of
Cellpose, CellSeg1 and the Glioma C6 paper; ``coco_map``-style figures live
under ``coco``. See :mod:`cellbench.metrics.evaluate` for aggregation and
edge cases.
"""

from cellbench.metrics.boundary import drop_boundary, touches_frame
from cellbench.metrics.coco import COCO_IOU_THRESHOLDS, CocoResult, coco_image, coco_summary
from cellbench.metrics.evaluate import (
    DEFAULT_THRESHOLDS,
    Evaluation,
    Evaluator,
    ImageResult,
    evaluate,
    evaluate_image,
    threshold_key,
)
from cellbench.metrics.matching import Counts, match, match_pairs
from cellbench.metrics.overlap import Overlaps, overlaps_from_instances, overlaps_from_labels

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "DEFAULT_THRESHOLDS",
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
    "match_pairs",
    "overlaps_from_instances",
    "overlaps_from_labels",
    "threshold_key",
    "touches_frame",
]
