"""``cellbench report``: a run folder -> tables (CSV), figures (PNG) and one report.html."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellbench.files import staged_dir
from cellbench.instances import flatten, policy_from_name
from cellbench.report import plots
from cellbench.report.analysis_sections import analysis_sections
from cellbench.report.certainty_tables import interval_table, pairwise_tables
from cellbench.report.class_tables import class_tables
from cellbench.report.html import Section, render_html
from cellbench.report.published_section import published_section
from cellbench.report.leaderboard import (
    LEADERBOARD_SECTION,
    SEEDS_SECTION,
    leaderboard_table,
    seed_aggregates,
    seed_table,
)
from cellbench.report.metric_table import metrics_table
from cellbench.report.results import EntryEvaluation, RunResults, load_results, threshold_key
from cellbench.report.run_data import entry_dataset, predictions
from cellbench.report.tables import (
    Table,
    coco_table,
    count_bin_tables,
    failure_table,
    glioma_tables,
    summary_tables,
    threshold_tables,
    timing_table,
    top_bottom_tables,
    training_table,
)
from cellbench.runner import RESULTS_DB

__all__ = ["ReportSummary", "build_tables", "write_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSummary:
    out: str
    html: str
    tables: tuple[str, ...]
    figures: tuple[str, ...]


def build_tables(results: RunResults) -> dict[str, list[Table]]:
    """Every table of the report, by section name; the leaderboard first."""
    evs = results.evaluations
    aggregates = seed_aggregates(evs)
    sections = {
        LEADERBOARD_SECTION: [t for t in (leaderboard_table(aggregates),) if t is not None],
        SEEDS_SECTION: [t for t in (seed_table(aggregates),) if t is not None],
        "Metrics and matching conventions": [t for t in (metrics_table(evs),) if t is not None],
        "Glioma C6 paper tables": glioma_tables(evs),
        "Certainty: bootstrap intervals and paired comparisons": [
            *(t for t in (interval_table(evs),) if t is not None), *pairwise_tables(evs)],
        "Performance summary (NeurIPS-2022 report)": summary_tables(evs),
        "Classes: per-class scores and class confusion": class_tables(evs),
        "Performance across IoU thresholds": threshold_tables(evs),
        "Top and bottom images": top_bottom_tables(evs),
        "Performance by cell count": count_bin_tables(evs),
        "Training": [t for t in (training_table(results.entries),) if t is not None],
        "COCO metrics": [t for t in (coco_table(evs),) if t is not None],
        "Timings": [timing_table(evs)],
        "Failed grid entries": [t for t in (failure_table(results.entries),) if t is not None],
    }
    return {k: v for k, v in sections.items() if v}


def _contexts(evs) -> dict[tuple, list[EntryEvaluation]]:
    groups: dict[tuple, list[EntryEvaluation]] = {}
    for ev in evs:
        groups.setdefault(ev.context, []).append(ev)
    return groups


def _qualitative_rows(results: RunResults, evs: list[EntryEvaluation], n_images: int):
    """(name, image, gt, [(model, prediction, f1)]) for the first ``n_images`` of a context.

    Ground truth and predictions as annotated and cached, before the boundary rule: the panels show the frame.
    """
    first = evs[0].evaluation
    dataset = entry_dataset(evs[0])
    samples = dataset.samples[:n_images]
    gts = [s.instances for s in samples]
    if first.ground_truth == "flattened":
        policy = policy_from_name(first.flatten_policy)
        gts = [flatten(g, policy).to_instance_set() for g in gts]
    names = [s.name for s in samples]
    cached = [predictions(results, ev, names, boundary_rule=False) for ev in evs]
    rows = []
    tk = threshold_key(0.5)
    for sample, gt in zip(samples, gts):
        preds = []
        for ev, pred in zip(evs, cached):
            if sample.name not in pred:
                continue
            images = ev.evaluation.result.get("per_image", ())
            f1 = next((img.get("by_iou", {}).get(tk, {}).get("f1") for img in images if img["image"] == sample.name),
                      None)
            preds.append((ev.entry.model, pred[sample.name], f1))
        if preds:
            rows.append((sample.name, sample.load_image(), gt, preds))
    return rows


def write_report(
    run_dir: str | Path,
    out: str | Path,
    *,
    qualitative_images: int = 2,
    overwrite: bool = False,
    progress: Callable | None = None,
) -> ReportSummary:
    """Write ``report.html``, ``tables/*.csv``, ``figures/*.png`` and ``tables.json`` into ``out``.

    ``out`` is written through a temporary folder and appears complete or not at all.
    """
    results = load_results(run_dir)
    out = Path(out)
    sections_tables = build_tables(results)
    with staged_dir(out, overwrite=overwrite) as tmp:
        written = []
        (tmp / "tables").mkdir()
        extra = analysis_sections(results, tmp / "figures", error_images=qualitative_images, progress=progress)
        published = published_section(results, tmp / "figures")
        extra_first = [published] if published is not None else []  # shown after the seed tables
        for tables in [*sections_tables.values(), *(s.tables for s in extra_first + extra)]:
            for t in tables:
                (tmp / "tables" / f"{t.key}.csv").write_text(t.to_csv())
                written.append(t.key)
        (tmp / "tables.json").write_text(json.dumps(
            {name: [t.to_dict() for t in tables] for name, tables in
             [*sections_tables.items(), *((s.title, s.tables) for s in extra_first + extra)]}, indent=1,
            default=str))
        figures: list[tuple[str, Path]] = []
        contexts = list(_contexts(results.evaluations).items())
        shown = progress(contexts, desc="report figures") if progress else contexts
        qualitative: list[tuple[str, Path]] = []
        for k, (context, evs) in enumerate(shown):
            setting = evs[0].setting()
            figures.append((f"Metric comparison at IoU 0.5, F1 vs IoU threshold, mean F1 by GT cell count — {setting}",
                            plots.context_figure(evs, tmp / "figures" / f"metrics_{k}.png")))
            if qualitative_images:
                try:
                    rows = _qualitative_rows(results, evs, qualitative_images)
                except Exception as exc:  # the data may be gone; the report still stands
                    log.warning("no qualitative panel for %s: %s", setting, exc)
                    rows = []
                if rows:
                    qualitative.append((f"Qualitative: GT borders light blue, predictions red — {setting}",
                                        plots.qualitative_panel(rows, tmp / "figures" / f"qualitative_{k}.png",
                                                                title=setting)))
        curves = plots.training_curves(results.entries, tmp / "figures" / "training_curves.png")
        leaders = plots.seed_figure(seed_aggregates(results.evaluations, intervals=False),
                                    tmp / "figures" / "leaderboard.png")
        sections = []
        n_done = sum(e.status == "done" for e in results.entries)
        for name, tables in sections_tables.items():
            figs: tuple = ()
            if name == "Training" and curves is not None:
                figs = (("Training curves: loss per epoch (solid), validation score (dashed)", curves),)
            if name == LEADERBOARD_SECTION and leaders is not None:
                figs = (("F1@0.5 against the overlapping ground truth: each seed (dots), mean ± sd across seeds "
                         "(bar, error bar)", leaders),)
            sections.append(Section(name, tables=tuple(tables), figures=figs))
            if name == SEEDS_SECTION:
                sections += extra_first
        if SEEDS_SECTION not in sections_tables:
            sections = extra_first + sections
        sections += extra
        sections.append(Section("Figures", figures=tuple(figures)))
        if qualitative:
            sections.append(Section("Qualitative panels", figures=tuple(qualitative)))
        env = [i.environment | {"executor": i.executor, "started": i.started_at, "finished": i.finished_at,
                                "status": i.status, "resumed": i.resumed}
               for i in results.invocations]
        sections.append(Section("Experiment and environment",
                                 text="The experiment as run, and one entry per `cellbench run` invocation.",
                                 pre=json.dumps({"experiment": results.experiment, "invocations": env}, indent=1)))
        intro = (f"Run {results.name}: {len(results.entries)} grid entries, {n_done} done, "
                 f"{len(results.failed)} failed; {len(results.evaluations)} evaluations. Every table says how its "
                 f"numbers were made; the results database is {Path(results.run_dir) / RESULTS_DB}.")
        (tmp / "report.html").write_text(render_html(f"cellbench report: {results.name}", intro, sections))
        figure_names = [p.name for _, p in figures + qualitative] + (["training_curves.png"] if curves else [])
        figure_names += ["leaderboard.png"] if leaders else []
        figure_names += [str(p.relative_to(tmp / "figures")) for s in extra_first + extra for _, p in s.figures]
    return ReportSummary(out=str(out), html=str(out / "report.html"), tables=tuple(written),
                         figures=tuple(figure_names))
