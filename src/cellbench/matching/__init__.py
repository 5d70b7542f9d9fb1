"""Which predicted instance matches which true one: overlaps and the matching rule, nothing else.

One rule for all of cellbench: a pair is a true positive at IoU threshold
``t`` when the optimal one-to-one matching pairs it and its IoU is **>= t**
(StarDist, Cellpose, the NeurIPS-2022 challenge). :mod:`cellbench.metrics`
reports with it and re-exports these names; methods tune and select models
with it (:func:`match_labels`, :func:`pooled`), so "F1@0.5" means one thing.
The package sits below both (it needs only :mod:`cellbench.instances`).
"""

from cellbench.matching.assignment import assign
from cellbench.matching.counts import COUNT_RATIOS, Counts, counts_of, match, match_labels, match_pairs, pooled
from cellbench.matching.overlap import Overlaps, PixelPairCounts, overlaps_from_instances, overlaps_from_labels

__all__ = [
    "COUNT_RATIOS",
    "Counts",
    "Overlaps",
    "PixelPairCounts",
    "assign",
    "counts_of",
    "match",
    "match_labels",
    "match_pairs",
    "overlaps_from_instances",
    "overlaps_from_labels",
    "pooled",
]
