"""Report tables of certainty: bootstrap intervals of the headline pooled numbers and paired method comparisons.

The numbers come from :mod:`cellbench.analysis.certainty` on each stored
evaluation's ``per_image`` counts: seeded percentile bootstrap over images
(pooled metric recomputed from resampled TP / FP / FN sums), paired between
two methods scored on the same images, and the Wilcoxon signed-rank test on
per-image F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from cellbench.analysis import bootstrap_interval, image_counts, paired_comparison
from cellbench.errors import DataError
from cellbench.report.results import EntryEvaluation, threshold_key
from cellbench.report.tables import Table, _groups, _slug

__all__ = ["FEW_IMAGES", "HEADLINE_METRICS", "interval_table", "pairwise_tables"]

#: The pooled metrics shown with intervals and compared between methods (ap_dsb = TP / (TP + FP + FN)).
HEADLINE_METRICS = ("f1", "ap_dsb")
#: Below this many images a pairwise row says the bootstrap is unreliable (it sees too few distinct resamples).
FEW_IMAGES = 10


def _per_image(ev: EntryEvaluation, threshold: float) -> list | None:
    images = ev.evaluation.result.get("per_image") or []
    tk = threshold_key(threshold)
    if not images or any(tk not in (img.get("by_iou") or {}) for img in images):
        return None
    return images


def _bootstrap_words(n_boot: int, level: float, seed: int) -> str:
    return (f"percentile bootstrap over images (images resampled with replacement, {n_boot} resamples, numpy "
            f"default_rng seed {seed}; the pooled metric recomputed from each resample's summed TP / FP / FN), "
            f"{100 * level:g} % interval")


def interval_table(
    evaluations: Sequence[EntryEvaluation], *, threshold: float = 0.5, n_boot: int = 1000, level: float = 0.95,
    seed: int = 0,
) -> Table | None:
    """Pooled F1 and ap_dsb at ``threshold`` of every evaluation with their bootstrap interval."""
    rows = []
    for ev in evaluations:
        images = _per_image(ev, threshold)
        if images is None:
            continue
        counts = image_counts(images, threshold)
        cells = []
        for metric in HEADLINE_METRICS:
            r = bootstrap_interval(counts, metric, n_boot=n_boot, level=level, seed=seed)
            cells += [r.estimate, r.low, r.high]
        rows.append((ev.entry.dataset, ev.entry.task, ev.evaluation.split or "all", ev.evaluation.ground_truth,
                     ev.entry.model, *cells, len(images)))
    if not rows:
        return None
    pct = f"{100 * level:g} %"
    used = [ev for ev in evaluations if _per_image(ev, threshold) is not None]
    policies = sorted({ev.evaluation.flatten_policy for ev in used if ev.evaluation.flatten_policy})
    boundaries = sorted({ev.evaluation.boundary_px for ev in used})
    t = round(100 * threshold)
    return Table(
        key=f"certainty_intervals_iou{threshold}",
        title=f"Pooled F1 and AP@{t} with {pct} bootstrap intervals",
        columns=("Dataset", "Task", "Split", "Ground truth", "Model", f"F1@{t}", "F1 low", "F1 high",
                 f"AP@{t}", "AP low", "AP high", "Images"),
        rows=tuple(rows),
        caption=f"Pooled over images (TP, FP, FN summed) at IoU {threshold}; AP = TP / (TP + FP + FN) (ap_dsb, "
                f"not COCO AP); fractions, not %; low / high: {_bootstrap_words(n_boot, level, seed)}. "
                f"Flattened ground truth: policy {', '.join(policies) or 'n/a'}; boundary rule: "
                + ", ".join(f"{b} px frame" if b else "off" for b in boundaries)
                + ". The interval reflects which images were drawn, not retraining or other seeds.",
    )


def _names(evs: Sequence[EntryEvaluation]) -> list[str]:
    models = [ev.entry.model for ev in evs]
    return models if len(set(models)) == len(models) else [ev.entry.label for ev in evs]


def pairwise_tables(
    evaluations: Sequence[EntryEvaluation], *, threshold: float = 0.5, n_boot: int = 1000, level: float = 0.95,
    seed: int = 0,
) -> list[Table]:
    """Every two methods of the same dataset / task / split / ground truth: paired bootstrap and Wilcoxon."""
    tables = []
    for context, evs in _groups(evaluations).items():
        usable = [ev for ev in evs if _per_image(ev, threshold) is not None]
        if len(usable) < 2:
            continue
        rows = []
        for (ea, na), (eb, nb) in combinations(zip(usable, _names(usable)), 2):
            a, b = _per_image(ea, threshold), _per_image(eb, threshold)
            for metric in HEADLINE_METRICS:
                try:
                    r = paired_comparison(a, b, metric, threshold, n_boot=n_boot, level=level, seed=seed,
                                          names=(na, nb))
                except DataError as exc:
                    rows.append((na, nb, metric, *([None] * 8), str(exc)))
                    continue
                notes = [] if r.wilcoxon_statistic is not None else [r.wilcoxon_note]
                if r.n_images < FEW_IMAGES:
                    notes.append(f"only {r.n_images} images: the bootstrap understates the uncertainty")
                rows.append((na, nb, metric, r.estimate_a, r.estimate_b, r.difference, r.low, r.high,
                             r.p_bootstrap, r.p_wilcoxon, r.n_images, "; ".join(notes)))
        tables.append(Table(
            key=_slug("certainty_pairs", *context[:4], f"iou{threshold}"),
            title=f"Paired comparisons between methods (IoU {threshold})",
            columns=("Model A", "Model B", "Metric", "A", "B", "A - B", "Diff low", "Diff high", "Bootstrap p",
                     "Wilcoxon p", "Images", "Note"),
            rows=tuple(rows),
            caption=f"{usable[0].setting()}; pooled metric (TP, FP, FN summed; ap_dsb = TP / (TP + FP + FN)) of "
                    f"A minus B, fractions; paired {_bootstrap_words(n_boot, level, seed)}, the same resampled "
                    f"images for both methods; bootstrap p: two-sided, 2 x the smaller share of resampled "
                    f"differences <= 0 or >= 0 (+1 correction, so >= 2 / ({n_boot} + 1)); Wilcoxon p: "
                    f"scipy.stats.wilcoxon signed-rank on per-image F1 (two-sided, zero differences dropped, images "
                    f"with F1 undefined for either method left out; p = 1 when every difference is 0). "
                    f"No correction for multiple comparisons; with fewer than {FEW_IMAGES} images the Note says the "
                    f"bootstrap is unreliable.",
        ))
    return tables
