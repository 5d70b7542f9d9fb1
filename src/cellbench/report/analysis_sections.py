"""The report's analysis sections, each with its tables, figures and a sentence on its data and settings.

Error analysis (every run), morphology of ground truth vs predictions (every
run whose data is still there), annotation agreement (when the run folder
holds ``agreement*.json``), the 18-methods paper's methods in cellbench (a run
of that paper's protocol), the 18-methods ranking (when the run holds >= 2
models and COCO metrics), the mAP regression (when some method has more
observations than terms) and data efficiency (when a method was trained on
>= 2 training-set sizes). A section that cannot be made is left out with a
log line; the rest of the report stands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from cellbench.errors import DataError
from cellbench.report.error_section import ERROR_THRESHOLD, error_analysis
from cellbench.report.html import Section
from cellbench.report.morphology_section import agreement_tables, morphology_section
from cellbench.report.paper_methods import paper_methods_section
from cellbench.report.paper_sections import (
    EFFICIENCY_THRESHOLD,
    efficiency_section,
    preferred_evaluations,
    ranking_figure,
    ranking_from_run,
    ranking_table,
    regression_from_run,
    regression_table,
)
from cellbench.report.results import RunResults

__all__ = ["analysis_sections"]

log = logging.getLogger(__name__)


def _ranking(results: RunResults, figures_dir: Path) -> Section | None:
    models = {(ev.entry.method, ev.entry.regime) for ev in results.evaluations}
    if len(models) < 2:
        return None
    try:
        ranking, source, notes = ranking_from_run(results)
    except DataError as exc:
        log.info("no ranking: %s", exc)
        return None
    path = ranking_figure(ranking, figures_dir / "ranking.png")
    return Section(
        "Ranking (18-methods paper scheme)",
        text=f"Every model of the run ({len(ranking.rows)}), ranked by the mean of its task accuracies (COCO), "
             f"usability (cellbench's default usability scores; `cellbench analyze rank --usability FILE` for "
             f"others) and scalability (standardised training time). Normalised scores are relative to the models "
             f"of this run only.",
        tables=(ranking_table(ranking, source, notes),),
        figures=(("Ranking: overall, mean accuracy, usability and scalability per model, best on top", path),),
    )


def _regression(results: RunResults) -> Section | None:
    per_method: dict[str, int] = {}
    for ev in preferred_evaluations(results):
        per_method[ev.entry.method] = per_method.get(ev.entry.method, 0) + 1
    if max(per_method.values(), default=0) < 3:  # 1 + 1 term at the very least; skip measuring the data
        return None
    try:
        fits = regression_from_run(results)
    except DataError as exc:
        log.info("no regression: %s", exc)
        return None
    if not any(f.coefficients for f in fits):
        return None
    return Section(
        "Regression of mAP on training images, cell size and elongation (18-methods paper)",
        text="Per method, over the run's tasks, regimes and seeds; needs more observations than terms.",
        tables=(regression_table(fits),),
    )


def analysis_sections(
    results: RunResults,
    figures_dir: Path,
    *,
    error_images: int = 2,
    progress: Callable | None = None,
) -> list[Section]:
    """The analysis sections of ``results``, figures written under ``figures_dir``."""
    sections = []
    try:
        tables, figures = error_analysis(results, figures_dir, n_images=error_images, progress=progress)
    except Exception as exc:  # e.g. a cached prediction that no longer fits its image: the report still stands
        log.warning("no error analysis section: %s", exc)
        tables, figures = [], []
    if tables:
        sections.append(Section(
            "Error analysis",
            text=f"Every model against the ground truth it was scored on (cached predictions, boundary rule "
                 f"applied), matched at IoU {ERROR_THRESHOLD}: recall by cell size and shape, splits and merges, and "
                 f"error maps of the first {error_images} test image(s) of each dataset / task / split.",
            tables=tuple(tables), figures=tuple(figures)))
    try:
        tables, figures = morphology_section(results, figures_dir)
    except Exception as exc:  # measuring is best effort: the data may be gone or odd
        log.warning("no morphology section: %s", exc)
        tables, figures = [], []
    if tables:
        sections.append(Section(
            "Morphology: ground truth and predictions",
            text="Shapes of the annotated and the predicted instances of the test images, per class (overlapping "
                 "ground truth when scored).",
            tables=tuple(tables), figures=tuple(figures)))
    tables = agreement_tables(results.run_dir)
    if tables:
        sections.append(Section(
            "Annotation agreement",
            text="From `cellbench agreement --json` files in the run folder (Glioma C6 Table 3 layout).",
            tables=tuple(tables)))
    for make in (lambda: paper_methods_section(results), lambda: _ranking(results, figures_dir),
                 lambda: _regression(results)):
        section = make()
        if section is not None:
            sections.append(section)
    try:
        tables, figures = efficiency_section(results, figures_dir)
    except Exception as exc:
        log.warning("no data-efficiency section: %s", exc)
        tables, figures = [], []
    if tables:
        sections.append(Section(
            "Data efficiency",
            text=f"Methods trained on several training-set sizes (regimes) and draws (seeds): pooled AP@"
                 f"{EFFICIENCY_THRESHOLD} (TP / (TP + FP + FN)) against the number of training images and of "
                 f"annotated training cells (CellSeg1 Figs. 3-5).",
            tables=tuple(tables), figures=tuple(figures)))
    return sections
