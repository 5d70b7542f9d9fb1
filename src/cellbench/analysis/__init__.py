"""Analyses on data, predictions and results: per-instance morphology, annotation agreement, certainty.

Pure functions returning frozen records (pandas is not a dependency; each
table has a ``*_rows`` function giving tidy dicts and a CSV / JSON writer).
Sits between :mod:`cellbench.metrics` and :mod:`cellbench.runner`: it may
use data, instances and metrics, never the runner, report or CLI.
"""

from cellbench.analysis.agreement import CONSENSUS_RULE, Agreement, PairAgreement, agreement, build_consensus
from cellbench.analysis.certainty import (
    CERTAINTY_METRICS,
    BootstrapInterval,
    ImageCounts,
    PairedComparison,
    bootstrap_interval,
    image_counts,
    paired_comparison,
    pooled_metric,
)
from cellbench.analysis.morphology import (
    COLUMNS,
    MEASURES,
    MorphologyRecord,
    ShapeMeasures,
    boundary_covariance,
    measure_instances,
    measure_mask,
    morphology_rows,
    morphology_table,
    write_morphology_csv,
)
from cellbench.analysis.morphology_plots import morphology_figures

__all__ = [
    "CERTAINTY_METRICS",
    "BootstrapInterval",
    "ImageCounts",
    "PairedComparison",
    "bootstrap_interval",
    "image_counts",
    "paired_comparison",
    "pooled_metric",
    "COLUMNS",
    "CONSENSUS_RULE",
    "MEASURES",
    "Agreement",
    "MorphologyRecord",
    "PairAgreement",
    "ShapeMeasures",
    "agreement",
    "boundary_covariance",
    "build_consensus",
    "measure_instances",
    "measure_mask",
    "morphology_figures",
    "morphology_rows",
    "morphology_table",
    "write_morphology_csv",
]
