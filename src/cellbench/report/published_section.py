"""The report's "Published vs this run": every number the protocol's paper published beside this run's.

Shown when the run came from a protocol with published values: ``cellbench
reproduce`` records them in the run folder (``protocol.json``), and a run
started with ``cellbench run examples/protocols/NAME.yaml`` finds
``NAME.published.yaml`` beside its experiment file
(:func:`cellbench.protocols.run_published`).

For every published value (:class:`cellbench.protocols.PublishedValue`) the
evaluations of its protocol entry, one per seed, go to
:func:`cellbench.analysis.compare_published`: this run's value (mean, median
or max across seeds, as the value says), its interval across seeds and images,
the difference, and whether the published value lies inside the interval. One
table per source table of the paper (values in the paper's unit), one figure
of published against measured, and a caption saying which rows ran under a
budget's changes (:mod:`cellbench.protocols.budget`), so that a difference
that comes from the budget is not read as one of cellbench's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cellbench.analysis import PublishedComparison, compare_published
from cellbench.protocols import PublishedValue, RunProvenance, run_published
from cellbench.report import plots
from cellbench.report.html import Section
from cellbench.report.results import RunResults
from cellbench.report.tables import ShownTable, _slug
from cellbench.runner import MethodSpec, Regime, seed_matters

__all__ = ["PUBLISHED_SECTION", "PublishedRow", "published_rows", "published_section", "published_tables"]

PUBLISHED_SECTION = "Published vs this run"
_SCALE = {"fraction": 1.0, "percent": 100.0}
_BUDGET_WORDS = {"seeds": "seeds", "method": "schedule", "dataset": "images", "regime": "images"}


@dataclass(frozen=True)
class PublishedRow:
    """One published value with this run's comparison (None when no run can measure it) and what stood in the way.

    ``status``: ``compared``, ``not run`` (no grid entry of this run), ``failed`` (every seed's entry failed),
    ``not measurable`` (the value's table says why). ``budget``: the kinds of budget change that touched the entry.
    """

    value: PublishedValue
    comparison: PublishedComparison | None
    status: str
    budget: tuple[str, ...] = ()


def _seeded(experiment: dict) -> set[tuple[str, str]]:
    """(method label, regime) pairs of the run's experiment whose models depend on the seed
    (:func:`cellbench.runner.seed_matters`: not zero-shot, not an unseeded method on all images)."""
    regimes = [Regime(r["name"], r.get("train_images")) for r in experiment.get("regimes", ())]
    return {(m["name"], r.name) for m in experiment.get("methods", ()) for r in regimes
            if seed_matters(MethodSpec(m["name"], m["method"]), r)}


def _budget_kinds(value: PublishedValue, provenance: RunProvenance, seeded: set[tuple[str, str]]) -> tuple[str, ...]:
    """The kinds of budget change that touched the value's entry (fewer seeds only where the seed matters)."""
    e = value.entry
    kinds = []
    for c in provenance.changes:
        touched = ((c.scope == "seeds" and (e.method, e.regime) in seeded)
                   or (c.scope == "method" and c.target == e.method)
                   or (c.scope == "dataset" and c.target == e.dataset)
                   or (c.scope == "regime" and c.target == e.regime))
        if touched:
            kinds.append(_BUDGET_WORDS[c.scope])
    return tuple(dict.fromkeys(kinds))


def published_rows(results: RunResults, provenance: RunProvenance, *, n_boot: int = 1000,
                   level: float = 0.95) -> list[PublishedRow]:
    """Every published value of ``provenance`` paired with the run's evaluations of its entry."""
    by_entry: dict[tuple, dict[int, dict]] = {}
    for ev in results.evaluations:
        e, r = ev.entry, ev.evaluation
        key = (e.dataset, e.task, e.method, e.regime, r.split, r.ground_truth)
        by_entry.setdefault(key, {})[e.seed] = r.result
    failed = {(e.dataset, e.task, e.method, e.regime) for e in results.failed}
    seeded = _seeded(results.experiment)
    rows = []
    for v in provenance.published.values if provenance.published else ():
        e = v.entry
        budget = _budget_kinds(v, provenance, seeded)
        if not v.measured:
            rows.append(PublishedRow(v, None, "not measurable", budget))
            continue
        evaluations = by_entry.get((e.dataset, e.task, e.method, e.regime, e.split, e.ground_truth), {})
        if not evaluations:
            status = "failed" if (e.dataset, e.task, e.method, e.regime) in failed else "not run"
            rows.append(PublishedRow(v, None, status, budget))
            continue
        comparison = compare_published(v.fraction, v.metric, evaluations, statistic=v.statistic,
                                       relation=v.relation, n_boot=n_boot, level=level)
        rows.append(PublishedRow(v, comparison, "compared", budget))
    return rows


def _num(x: float | None, scale: float) -> float | None:
    return None if x is None else x * scale


def _fmt(x: float | None, scale: float, digits: int) -> str:
    return "n/a" if x is None else f"{x * scale:.{digits}f}"


def _inside_words(row: PublishedRow) -> str:
    c = row.comparison
    if c is None or c.inside is None:
        return "n/a"
    return "yes" if c.inside else "no"


def _budget_words(provenance: RunProvenance) -> str:
    if provenance.budget is None:
        return ("Budget: unknown (the run was not made by `cellbench reproduce`, so no budget was recorded); "
                "compare its experiment (last section) with the protocol's before reading a difference as cellbench's.")
    if not provenance.changes:
        return (f"Budget {provenance.budget}: the protocol as written (no schedule, subset or seed changed), so no "
                f"difference comes from a budget.")
    listed = "; ".join(c.text() for c in provenance.changes)
    return (f"Budget {provenance.budget}: {len(provenance.changes)} change(s) to the protocol: {listed}. A row whose "
            f"Budget column names a change (seeds: fewer training seeds; schedule: the method's training was "
            f"shortened or otherwise changed; images: fewer training and test images) ran under it, and its difference "
            f"comes at least in part from the budget, not from cellbench or the paper; rows with an empty Budget "
            f"column ran as the protocol says.")


def published_tables(rows: Sequence[PublishedRow], provenance: RunProvenance) -> list[ShownTable]:
    """One table per source table of the paper: published value, this run's value and interval, difference."""
    tables = []
    groups: dict[tuple[str, str], list[PublishedRow]] = {}
    for r in rows:
        groups.setdefault((r.value.paper, r.value.source), []).append(r)
    budget = _budget_words(provenance)
    for (paper, source), group in groups.items():
        v0 = group[0].value
        scale = _SCALE[v0.unit]
        digits = 2 if v0.unit == "percent" else 4
        csv_rows, shown = [], []
        for r in group:
            v, c = r.value, r.comparison
            e = v.entry
            note = v.note if v.certain else f"UNCERTAIN: {v.note}"
            if r.status == "not measurable":
                note = f"not measurable by a run: {v.why}"
            elif r.status != "compared":
                note = f"{r.status}; {note}" if note else r.status
            csv_rows.append((
                paper, source, v.row, e.dataset, e.task, e.split, e.method, e.regime, e.ground_truth, e.image,
                v.metric, v.unit, v.relation, v.value, "yes" if v.certain else "no", v.statistic,
                " ".join(map(str, c.seeds)) if c else "", _num(c and c.measured, scale), _num(c and c.low, scale),
                _num(c and c.high, scale), _num(c and c.difference, scale), _inside_words(r), c.n_images if c else None,
                c.interval if c else "", r.status, " ".join(r.budget), v.note, v.why,
            ))
            interval = ("" if c is None or c.low is None
                        else f" [{_fmt(c.low, scale, digits)}, {_fmt(c.high, scale, digits)}]")
            published = "n/a" if v.value is None else f"{'> ' if v.relation == '>' else ''}{v.value:g}"
            measured = "n/a" if c is None else f"{_fmt(c.measured, scale, digits)}{interval}"
            diff = "n/a" if c is None or c.difference is None else f"{c.difference * scale:+.{digits}f}"
            shown.append((v.row, v.metric + ("" if e.image is None else f" ({e.image})"),
                          published + ("" if v.certain else " ?"), measured, diff, _inside_words(r),
                          ", ".join(r.budget), note))
        statistics = sorted({r.value.statistic for r in group})
        compared = [r for r in group if r.comparison is not None]
        how = compared[0].comparison.interval if compared else "none (nothing compared)"
        tables.append(ShownTable(
            key=_slug("published", v0.paper, source),
            title=f"{paper}, {source}: published vs this run",
            columns=("Paper", "Source", "Row", "Dataset", "Task", "Split", "Method", "Regime", "Ground truth",
                     "Image", "Metric", "Unit", "Relation", "Published", "Certain", "Statistic across seeds",
                     "Seeds", "This run", "Low", "High", "Difference", "Inside", "Images", "Interval", "Status",
                     "Budget", "Note", "Why not measured"),
            rows=tuple(csv_rows),
            caption=f"Values in the paper's unit ({v0.unit}); this run's value is the {' / '.join(statistics)} across "
                    f"its training seeds of each seed's metric (the metric names say how it is aggregated: "
                    f"f1@0.5 pooled over images, mean_f1@0.5 per image then mean, ap_dsb = TP / (TP + FP + FN), not "
                    f"COCO AP). Interval: {how}. Difference: this run - published. Inside: the published value lies "
                    f"in the interval (for a lower bound '> x': the interval reaches above x). '?' marks a published "
                    f"value read with doubt (Note says why). {budget}",
            shown_columns=("Row", "Metric", "Published", "This run [interval]", "Difference", "Inside", "Budget",
                           "Note"),
            shown_rows=tuple(shown),
        ))
    return tables


def _figure_points(rows: Sequence[PublishedRow]) -> list[dict]:
    return [{"published": r.value.fraction, "measured": r.comparison.measured, "low": r.comparison.low,
             "high": r.comparison.high, "group": f"{r.value.paper}: {r.value.source}", "certain": r.value.certain,
             "relation": r.value.relation} for r in rows if r.comparison is not None]


def published_section(results: RunResults, figures_dir: Path, *, n_boot: int = 1000) -> Section | None:
    """The section, or None when the run has no published values to compare with."""
    provenance = run_published(results.run_dir, results.experiment_path)
    if provenance is None or provenance.published is None or not provenance.published.values:
        return None
    rows = published_rows(results, provenance, n_boot=n_boot)
    tables = published_tables(rows, provenance)
    figures_dir.mkdir(parents=True, exist_ok=True)
    figure = plots.published_figure(_figure_points(rows), figures_dir / "published_vs_run.png")
    counts = {s: sum(r.status == s for r in rows) for s in ("compared", "not run", "failed", "not measurable")}
    uncertain = sum(not r.value.certain for r in rows)
    pub = provenance.published
    text = (f"Protocol {provenance.protocol} ({pub.paper}): {len(rows)} published values, {counts['compared']} "
            f"compared with this run, {counts['not run']} not run here, {counts['failed']} failed, "
            f"{counts['not measurable']} not measurable by any run; {uncertain} read with doubt (marked ?). "
            f"{_budget_words(provenance)}")
    if pub.figures:
        text += " Published only as figures, not compared: " + "; ".join(
            f"{f['source']} ({f['what']})" for f in pub.figures) + "."
    if pub.omitted:
        text += " Left out of the published values: " + "; ".join(
            f"{o['source']}: {o['what']} ({o['why']})" for o in pub.omitted) + "."
    figs = ()
    if figure is not None:
        inside = [r for r in rows if r.comparison is not None and r.comparison.inside is not None]
        n_in = sum(r.comparison.inside for r in inside)
        budgeted = sum(bool(r.budget) for r in rows if r.comparison is not None)
        caption = (f"Published (x) against this run (y), as fractions; one point per compared value, colour = the "
                   f"paper's table; vertical bar: this run's interval; dashed: equal. {n_in} of {len(inside)} "
                   f"published values lie inside this run's interval. "
                   + (f"{budgeted} of the points ran under the budget's changes (Budget column): their distance from "
                      f"the diagonal comes at least in part from the budget. " if budgeted else
                      "No point ran under a budget change. ")
                   + "Hollow: a published value read with doubt; triangle: a lower bound.")
        figs = ((caption, figure),)
    return Section(PUBLISHED_SECTION, text=text, tables=tuple(tables), figures=figs)
