"""The named IoU threshold sets are defined once, in cellbench.metrics, and used everywhere."""

from __future__ import annotations

import inspect

from cellbench.cli.main import build_parser
from cellbench.metrics import (
    DEFAULT_THRESHOLDS,
    GLIOMA_THRESHOLDS,
    NEURIPS_THRESHOLDS,
    REPORT_THRESHOLDS,
    Evaluator,
    evaluate,
    evaluate_image,
)
from cellbench.report.tables import threshold_tables
from cellbench.runner.experiment import EvaluationSpec


def test_the_named_sets():
    assert GLIOMA_THRESHOLDS == (0.5, 0.75, 0.9)  # the Glioma C6 paper's AP columns
    assert NEURIPS_THRESHOLDS == (0.5, 0.7, 0.9)  # the NeurIPS-2022 report's threshold table
    assert REPORT_THRESHOLDS == (0.5, 0.7, 0.75, 0.9)  # both, for an experiment that feeds both reports
    assert DEFAULT_THRESHOLDS == GLIOMA_THRESHOLDS


def _default(fn, name="thresholds"):
    return inspect.signature(fn).parameters[name].default


def test_library_defaults():
    assert _default(evaluate) is DEFAULT_THRESHOLDS
    assert _default(evaluate_image) is DEFAULT_THRESHOLDS
    assert _default(Evaluator) is DEFAULT_THRESHOLDS
    assert _default(threshold_tables) is NEURIPS_THRESHOLDS
    assert EvaluationSpec().thresholds == REPORT_THRESHOLDS


def test_cli_evaluate_default():
    args = build_parser().parse_args(["evaluate", "--gt", "g", "--pred", "p"])
    assert tuple(args.iou) == DEFAULT_THRESHOLDS
