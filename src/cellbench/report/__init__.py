"""Things people look at: overlays, report tables, figures and the HTML report of a run."""

from cellbench.report.build import ReportSummary, build_tables, write_report
from cellbench.report.overlay import draw_outlines, normalize_for_display
from cellbench.report.results import EntryEvaluation, RunResults, load_results
from cellbench.report.tables import COUNT_BINS, ShownTable, Table

__all__ = [
    "COUNT_BINS",
    "EntryEvaluation",
    "ReportSummary",
    "RunResults",
    "ShownTable",
    "Table",
    "build_tables",
    "draw_outlines",
    "load_results",
    "normalize_for_display",
    "write_report",
]
