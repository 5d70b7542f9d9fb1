"""A run's results through the 18-methods paper's ranking and regression, and CellSeg1's data efficiency.

These gather, from a run's stored records (and, for the covariates, its
data and cache), the inputs of :mod:`cellbench.analysis.ranking`,
:mod:`~cellbench.analysis.regression` and :mod:`~cellbench.analysis.efficiency`,
and turn the results into report tables and figures. ``cellbench analyze
rank`` / ``regress`` and ``cellbench report`` share them.

Which evaluation stands for a grid entry: a run may score an entry against
overlapping and flattened ground truth; the analyses use the overlapping one
when it was scored (the annotations as they are), else the first.
A *task* is a dataset / task / split; a *model* is a method with its regime
(seeds, the draws, are averaged for the ranking and kept apart elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellbench.analysis import (
    USABILITY_CRITERIA,
    EfficiencyPoint,
    Ranking,
    RegressionObservation,
    RegressionResult,
    efficiency_bands,
    efficiency_figure,
    fit_regression,
    load_usability,
    measure_masks,
    rank_models,
    task_accuracy,
)
from cellbench.errors import DataError
from cellbench.figures import new_figure, save_figure
from cellbench.metrics import evaluate, threshold_key
from cellbench.report.results import EntryEvaluation, RunResults
from cellbench.report.run_data import ground_truth, predictions, shape_memo, train_cells
from cellbench.report.tables import Table, _slug, _training_info, standardised_time

__all__ = [
    "EFFICIENCY_THRESHOLD",
    "CocoSource",
    "efficiency_section",
    "iteration_time",
    "preferred_evaluations",
    "ranking_figure",
    "ranking_from_run",
    "ranking_table",
    "regression_from_run",
    "regression_table",
]

log = logging.getLogger(__name__)

#: Data efficiency is scored by pooled ap_dsb at this IoU (CellSeg1's AP50 = TP / (TP + FP + FN)).
EFFICIENCY_THRESHOLD = 0.5


def preferred_evaluations(results: RunResults) -> list[EntryEvaluation]:
    """One evaluation per grid entry and split: against overlapping ground truth when scored, else the first."""
    chosen: dict[tuple, EntryEvaluation] = {}
    for ev in results.evaluations:
        key = (ev.entry.key, ev.evaluation.split)
        if key not in chosen or (ev.evaluation.ground_truth == "overlap" != chosen[key].evaluation.ground_truth):
            chosen[key] = ev
    return list(chosen.values())


class CocoSource:
    """COCO summaries of a run's evaluations: the stored one, or one computed here with every score 1.

    A method that gives no instance scores (watershed) is stored without COCO
    metrics, since COCO ranks detections by score. For the ranking and the
    regression such an evaluation is scored here from its cached predictions
    against the ground truth as scored, every instance at score 1 (all
    detections at one confidence, kept in prediction order: AP then describes
    a single operating point). ``uniform`` lists the models scored so. What is
    computed here is kept in the results' memo, so the ranking and the
    regression of one report compute it once.
    """

    def __init__(self, results: RunResults) -> None:
        self.results = results
        self.uniform: set[str] = set()

    def summary(self, ev: EntryEvaluation) -> dict | None:
        stored = ev.evaluation.result.get("coco") or {}
        if stored.get("map") is not None:
            return stored
        summary = self.results.memoised(("coco, every score 1", ev.entry.key, ev.context), lambda: self._uniform(ev))
        if summary is not None:
            self.uniform.add(_model(ev))
        return summary

    def _uniform(self, ev: EntryEvaluation) -> dict | None:
        try:
            data = ground_truth(self.results, ev)
            preds = predictions(self.results, ev, data.names)
            if len(preds) != len(data.names):
                return None
            scored = [p.replace(instances=tuple(i.replace(score=1.0) for i in p)) for p in
                      (preds[n] for n in data.names)]
            summary = evaluate(list(data.gt), scored, names=list(data.names), thresholds=(0.5,),
                               coco=True).to_dict().get("coco")
        except Exception as exc:  # the data or cache may be gone
            log.warning("no COCO metrics for %s (%s): %s", ev.entry.label, ev.setting(), exc)
            return None
        return summary if summary and summary.get("map") is not None else None


def _task(ev: EntryEvaluation) -> str:
    return f"{ev.entry.dataset}/{ev.entry.task}/{ev.evaluation.split or 'all'}"


def _model(ev: EntryEvaluation) -> str:
    return f"{ev.entry.method} ({ev.entry.regime})"


# --- ranking -------------------------------------------------------------------------------------------


def iteration_time(wall_s: float, batch_size, iterations, n_images) -> float | None:
    """SegGal standardised running time for iteration-based training: Ts = T (B / 8) (50 N / (I B)).

    >>> iteration_time(100.0, 8, 500, 40)
    50.0
    """
    try:
        b, i, n = float(batch_size), float(iterations), float(n_images)
    except (TypeError, ValueError):
        return None
    if i <= 0 or b <= 0:
        return None
    return wall_s * (b / 8) * (50 * n / (i * b))


def _iterations(ev: EntryEvaluation):
    info = ((ev.entry.training.history if ev.entry.training else None) or {}).get("info") or {}
    cfg = (ev.entry.config.get("method") or {}).get("resolved_config") or (ev.entry.config.get("method") or {}).get(
        "config") or {}
    for source in (info, cfg):
        for name in ("iterations", "n_iterations", "max_iter", "max_iters", "steps"):
            if source.get(name) is not None:
                return source[name]
    return None


def _running_time(ev: EntryEvaluation) -> tuple[float | None, bool]:
    """Ts of the entry's training (True): the epoch formula when its history has epochs, else the iteration
    formula when it names its iterations; its raw wall time T when neither can be made (False)."""
    t = ev.entry.training
    if t is None or t.wall_s is None or not t.n_images:
        return None, True
    info = _training_info(ev.entry)
    ts = standardised_time(t.wall_s, info["batch_size"], info["epochs"])
    if ts is None:
        ts = iteration_time(t.wall_s, info["batch_size"], _iterations(ev), t.n_images)
    return (ts, True) if ts is not None else (float(t.wall_s), False)


def ranking_from_run(results: RunResults, *, usability: str | Path | None = None) -> tuple[Ranking, str, list[str]]:
    """The ranking of every model of the run; the usability file's source; notes on what was approximated.

    Raises :class:`DataError` when no evaluation holds COCO metrics (the accuracy needs them).
    """
    evs = preferred_evaluations(results)
    coco = CocoSource(results)
    acc_values: dict[str, dict[str, list[float]]] = {}
    ts_values: dict[str, dict[str, dict[str, float]]] = {}  # model -> dataset/task -> entry key -> Ts
    impl: dict[str, tuple[str, str]] = {}
    raw_t: set[str] = set()
    for ev in evs:
        m = _model(ev)
        impl[m] = (ev.entry.method, ev.entry.method_impl)
        acc = task_accuracy(coco.summary(ev))
        tasks = acc_values.setdefault(m, {})
        tasks.setdefault(_task(ev), [])
        if acc is not None:
            tasks[_task(ev)].append(acc)
        ts, standard = _running_time(ev)
        if ts is not None:
            ts_values.setdefault(m, {}).setdefault(f"{ev.entry.dataset}/{ev.entry.task}", {})[ev.entry.key] = ts
            if not standard:
                raw_t.add(m)
    if not any(v for tasks in acc_values.values() for v in tasks.values()):
        raise DataError("no COCO metrics for any evaluation of this run, which the ranking's accuracy needs: set "
                        "`evaluation: {coco: true}` in the experiment, and keep its data and cache",
                        path=results.run_dir)
    accuracy = {m: {t: (float(np.mean(v)) if v else None) for t, v in tasks.items()} for m, tasks in acc_values.items()}
    running = {m: {t: float(np.mean(list(v.values()))) for t, v in tasks.items()} for m, tasks in ts_values.items()}
    scores, source = load_usability(usability)
    usab = {m: scores.get(label, scores.get(name)) for m, (label, name) in impl.items()}
    notes = []
    if coco.uniform:
        notes.append(f"COCO computed with every instance score 1 (the method gives no scores) for "
                     f"{sorted(coco.uniform)}")
    if raw_t:
        notes.append(f"raw training wall time T instead of Ts (batch size or epochs unknown) for {sorted(raw_t)}")
    unscored = sorted(m for m, u in usab.items() if u is None)
    if unscored:
        notes.append(f"no usability scores for {unscored}")
    return rank_models(accuracy, usability=usab, running_time=running), source, notes


def ranking_table(ranking: Ranking, source: str, notes: Sequence[str] = ()) -> Table:
    rows = tuple((r.rank, r.model, r.overall, r.mean_accuracy, r.usability, r.scalability,
                  *(r.accuracy.get(t) for t in ranking.tasks), "; ".join(r.missing)) for r in ranking.rows)
    return Table(
        key="ranking",
        title="Ranking by accuracy, usability and scalability (18-methods paper scheme)",
        columns=("Rank", "Model", "Overall", "Mean accuracy", "Usability", "Scalability",
                 *(f"Accuracy {t}" for t in ranking.tasks), "Missing"),
        rows=rows,
        caption=f"{ranking.method}. Accuracy per task (dataset / task / split) against overlapping ground truth "
                f"when scored, seeds averaged; COCO metrics as pycocotools (fractions). Ts = T x (B / 8) x (50 / E) "
                f"for epoch-based training, T x (B / 8) x (50 N / (I B)) for iteration-based (N images, I "
                f"iterations), from each model's training per dataset / task (zero-shot models have none). "
                f"Usability scores: "
                f"{source or 'given file'}; criteria {', '.join(USABILITY_CRITERIA)} (1-10)."
                + (" Notes: " + "; ".join(notes) + "." if notes else ""),
    )


def ranking_figure(ranking: Ranking, path: Path) -> Path:
    """Grouped horizontal bars per model, best on top: overall, mean accuracy, usability, scalability."""
    rows = list(ranking.rows)
    fig = new_figure(7.5, 1.0 + 0.55 * len(rows))
    ax = fig.subplots()
    parts = (("overall", "overall"), ("mean_accuracy", "mean accuracy"), ("usability", "usability"),
             ("scalability", "scalability"))
    y = np.arange(len(rows))[::-1]
    h = 0.8 / len(parts)
    for k, (field, label) in enumerate(parts):
        vals = [getattr(r, field) for r in rows]
        ax.barh(y + (1.5 - k) * h, [v if v is not None else 0.0 for v in vals], h, label=label)
    ax.set_yticks(y, [f"{r.rank or '-'}. {r.model}" for r in rows], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (accuracy: mean COCO mAP/AP50/AP75/AR50/AR75; usability, scalability: Phi(z))")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Overall performance = mean of task accuracies, usability, scalability", fontsize=8)
    return save_figure(fig, path)


# --- regression ----------------------------------------------------------------------------------------


def _covariates(results: RunResults, ev: EntryEvaluation, cache: dict) -> tuple[float, float] | None:
    """Mean area and mean elongation of the ground truth ``ev`` was scored against (cached per context)."""
    if ev.context not in cache:
        try:
            data = ground_truth(results, ev)
        except Exception as exc:  # the data may be gone
            log.warning("no cell size / elongation for %s: %s", ev.setting(), exc)
            cache[ev.context] = None
        else:
            shapes = measure_masks((inst.mask for gt in data.gt for inst in gt), memo=shape_memo(results))
            elong = [s.elongation for s in shapes if s.elongation is not None]
            cache[ev.context] = (float(np.mean([s.area for s in shapes])), float(np.mean(elong))) if elong else None
    return cache[ev.context]


def regression_from_run(results: RunResults, *, level: float = 0.95) -> list[RegressionResult]:
    """One regression per method label of the run, over its evaluations (tasks x regimes x seeds)."""
    by_method: dict[str, list[RegressionObservation]] = {}
    cache: dict = {}
    have_coco = False
    coco = CocoSource(results)
    for ev in preferred_evaluations(results):
        m = (coco.summary(ev) or {}).get("map")
        if m is None:
            continue
        have_coco = True
        cov = _covariates(results, ev, cache)
        if cov is None:
            continue
        n_train = ev.entry.training.n_images if ev.entry.training and ev.entry.training.n_images else 0
        label = f"{_task(ev)} {ev.entry.regime} seed {ev.entry.seed}"
        by_method.setdefault(ev.entry.method, []).append(RegressionObservation(label, float(m), n_train, *cov))
    if not have_coco:
        raise DataError("no COCO mAP for any evaluation of this run, the regression's response: set "
                        "`evaluation: {coco: true}` in the experiment, and keep its data and cache",
                        path=results.run_dir)
    return [fit_regression(obs, group=method, level=level) for method, obs in by_method.items()]


def regression_table(fits: Sequence[RegressionResult]) -> Table:
    rows = []
    for r in fits:
        info = "; ".join(filter(None, [*r.dropped, r.note]))
        if not r.coefficients:
            rows.append((r.group, r.formula, None, None, None, None, None, None, r.n_obs, None, info))
        for c in r.coefficients:
            rows.append((r.group, r.formula, c.term, c.estimate, c.std_error, c.low, c.high, c.p_value, r.n_obs,
                         r.r_squared, info))
    level = fits[0].level if fits else 0.95
    return Table(
        key="regression",
        title="Multiple linear regression of COCO mAP (18-methods paper)",
        columns=("Method", "Formula", "Term", "Coefficient", "Std. error", "CI low", "CI high", "p", "Observations",
                 "R²", "Dropped / note"),
        rows=tuple(rows),
        caption=f"Per method, one observation per dataset / task / split x regime x seed (overlapping ground truth "
                f"when scored): m = COCO mAP@[.50:.05:.95] (for a method without instance scores computed with every "
                f"score 1); N = training images, S = mean GT cell area (px), E = mean "
                f"GT elongation eb / ea (boundary covariance eigenvalues; 1 round), each min-max scaled over the "
                f"method's observations; statsmodels OLS; {100 * level:g} % t intervals, two-sided p-values. A "
                f"covariate that does not vary is dropped (as the paper drops N for LIVECell).",
    )


# --- data efficiency -----------------------------------------------------------------------------------


def _efficiency_points(results: RunResults) -> dict[tuple, list[EfficiencyPoint]]:
    tk = threshold_key(EFFICIENCY_THRESHOLD)
    groups: dict[tuple, list[EfficiencyPoint]] = {}
    for ev in preferred_evaluations(results):
        t = ev.entry.training
        n_images = t.n_images if t is not None and t.n_images else 0
        score = ((ev.evaluation.result.get("pooled") or {}).get(tk) or {}).get("ap_dsb")
        groups.setdefault(ev.context, []).append(EfficiencyPoint(
            ev.entry.method, ev.entry.regime, ev.entry.seed, int(n_images), train_cells(results, ev), score))
    return groups


def efficiency_section(results: RunResults, figures_dir: Path) -> tuple[list[Table], list[tuple[str, Path]]]:
    """Tables and figures for every context where some method was scored with >= 2 training-set sizes."""
    tables, figures = [], []
    settings = {ev.context: ev.setting() for ev in results.evaluations}
    for k, (context, points) in enumerate(_efficiency_points(results).items()):
        sizes = {}
        for p in points:
            sizes.setdefault(p.method, set()).add(p.train_images)
        if max(len(s) for s in sizes.values()) < 2:
            continue
        bands = efficiency_bands(points)
        setting = settings[context]
        score = f"pooled AP@{EFFICIENCY_THRESHOLD} = TP / (TP + FP + FN)"
        tables.append(Table(
            key=_slug("efficiency", *context[:4]),
            title="Data efficiency: score against training images and training cells",
            columns=("Method", "Regime", "Draws", "Train images", "Train cells", "Mean", "SD", "Min", "Max"),
            rows=tuple((b.method, b.regime, b.n_draws, b.train_images, b.train_cells, b.mean, b.sd, b.low, b.high)
                       for b in bands),
            caption=f"{setting}; score: {score} (CellSeg1's AP50), fractions; one draw per seed (each seed picks its "
                    f"own training images); Mean / SD (sample, n - 1) / Min / Max over draws; Train cells: annotated "
                    f"instances in the training images (model.json), mean over draws; zero-shot counts 0 images.",
        ))
        path = efficiency_figure(points, figures_dir / f"efficiency_{k}.png", score_label=score, title=setting)
        figures.append((f"Data efficiency (CellSeg1 Figs. 3-5): {score} against training images and annotated "
                        f"training cells; line: mean over draws, band: min-max, dots: draws — {setting}", path))
    return tables, figures
