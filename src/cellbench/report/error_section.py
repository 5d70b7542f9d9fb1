"""The report's "Error analysis" section: recall by cell size and shape, splits and merges, error maps.

For every evaluation context (dataset, task, split, ground truth, boundary
rule) and every model scored in it, the cached predictions are matched again
to the ground truth as scored (:mod:`cellbench.report.run_data`) at IoU 0.5
and summarised by :func:`cellbench.analysis.error_summary`; error maps show
the first images of each context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from cellbench.analysis import (
    AREA_BINS,
    CONTAINMENT,
    ECCENTRICITY_BINS,
    ERROR_COLORS,
    ErrorSummary,
    error_map,
    error_summary,
    image_errors,
)
from cellbench.figures import hide_axes, new_figure, save_figure
from cellbench.report.overlay import normalize_for_display
from cellbench.report.results import RunResults
from cellbench.report.run_data import ground_truth, predictions
from cellbench.report.tables import Table, _groups, _slug

__all__ = ["ERROR_THRESHOLD", "MAX_MAP_MODELS", "error_analysis"]

log = logging.getLogger(__name__)

#: At most this many models get a panel in an error map (the tables list every one).
MAX_MAP_MODELS = 6
#: The IoU threshold the error analysis matches at.
ERROR_THRESHOLD = 0.5


def _bins_words(bins) -> str:
    return ", ".join(label for label, _, _ in bins)


def _bin_table(context: tuple, setting: str, kind: str, summaries: Sequence[tuple[str, ErrorSummary]]) -> Table:
    rows = []
    for model, s in summaries:
        for b in s.bins:
            if b.kind == kind:
                rows.append((model, b.label, b.n_gt, b.n_gt_matched, b.recall, b.n_pred, b.n_pred_matched,
                             b.precision))
    what = ("area (pixels)" if kind == "area" else
            "eccentricity of the second moments (scikit-image regionprops; 0 disc, -> 1 line)")
    bins = AREA_BINS if kind == "area" else ECCENTRICITY_BINS
    return Table(
        key=_slug("errors", kind, *context[:4]),
        title=f"Recall by ground-truth {'cell size' if kind == 'area' else 'cell shape'} (IoU {ERROR_THRESHOLD})",
        columns=("Model", "Bin", "GT", "GT matched", "Recall", "Predictions", "Pred. matched", "Precision"),
        rows=tuple(rows),
        caption=f"{setting}; instances binned by their {what}: bins {_bins_words(bins)} (lower bound inclusive); "
                f"Recall = matched GT / GT of the bin, pooled over images; Precision = matched predictions / "
                f"predictions whose own {kind} falls in the bin; matching: optimal one-to-one, TP when IoU >= "
                f"{ERROR_THRESHOLD}.",
    )


def _split_merge_table(context: tuple, setting: str, summaries: Sequence[tuple[str, ErrorSummary]]) -> Table:
    rows = tuple((model, s.n_images, s.n_gt, s.n_pred, s.n_tp, s.n_gt - s.n_tp, s.n_pred - s.n_tp, s.n_split_gt,
                  s.n_split_fragments, s.n_merge_pred, s.n_merged_gt) for model, s in summaries)
    pct = f"{100 * CONTAINMENT:g} %"
    return Table(
        key=_slug("errors_split_merge", *context[:4]),
        title="Misses, false positives, splits and merges",
        columns=("Model", "Images", "GT", "Predictions", "TP", "FN", "FP", "Split GT", "Split fragments",
                 "Merging predictions", "Merged GT"),
        rows=rows,
        caption=f"{setting}; TP / FP / FN at IoU {ERROR_THRESHOLD} (optimal one-to-one), summed over images. A "
                f"prediction lies in a GT instance when >= {pct} of the prediction's area is inside it, and a GT "
                f"instance lies in a prediction when >= {pct} of its own area is inside it. Split GT: GT instances "
                f"with >= 2 predictions lying in them (Split fragments: those predictions); Merging predictions: "
                f"predictions with >= 2 GT instances lying in them (Merged GT: those instances). Containment, not "
                f"IoU, so splits and merges are counted whatever the IoU threshold.",
    )


def _error_figure(name: str, image, gt, panels, path: Path, title: str) -> Path:
    """One image: a panel per model (TP green outlines, FP red, FN orange), cropped to 512 px around the centre."""
    crop = 512
    h, w = gt.shape
    y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    grey = normalize_for_display(image)
    rgb = grey[..., None].repeat(3, axis=-1) if grey.ndim == 2 else grey[..., :3]
    fig = new_figure(max(3.0 * len(panels), 4.5), 3.9)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (model, pred, errors) in zip(axes, panels):
        picture = error_map(rgb, gt, pred, errors)[window]
        ax.imshow(picture, interpolation="nearest")
        hide_axes(ax)
        n_fp = int((~errors.pred_matched).sum())
        n_fn = int((~errors.gt_matched).sum())
        ax.set_title(f"{model}\nTP {int(errors.pred_matched.sum())}  FP {n_fp}  FN {n_fn}", fontsize=7)
    colors = ", ".join(f"{k.upper()} {'outline' if k == 'tp' else 'fill'} rgb{v}" for k, v in ERROR_COLORS.items())
    import textwrap

    width = max(40, int(3.0 * len(panels) * 17))  # characters that fit across the figure at 7 pt
    text = f"{name} — {title}; {colors}; IoU {ERROR_THRESHOLD}"
    fig.suptitle("\n".join(textwrap.wrap(text, width)), fontsize=7)
    return save_figure(fig, path)


def error_analysis(
    results: RunResults,
    figures_dir: Path,
    *,
    n_images: int = 2,
    progress: Callable | None = None,
) -> tuple[list[Table], list[tuple[str, Path]]]:
    """Tables for every context and model, and error-map figures for the first ``n_images`` of each context.

    Error maps are drawn once per dataset / task / split (for the overlapping
    ground truth when it was scored), so a run scored against two kinds of
    ground truth does not repeat them.
    """
    tables: list[Table] = []
    figures: list[tuple[str, Path]] = []
    mapped: set[tuple] = set()
    groups = list(_groups([ev for ev in results.evaluations if ev.entry.status == "done"]).items())
    groups.sort(key=lambda g: g[0][3] != "overlap")  # overlap first: its maps are the ones drawn
    shown = progress(groups, desc="error analysis") if progress else groups
    for k, (context, evs) in enumerate(shown):
        setting = evs[0].setting()
        try:
            data = ground_truth(results, evs[0])
        except Exception as exc:  # the data may be gone; the report still stands
            log.warning("no error analysis for %s: %s", setting, exc)
            continue
        summaries, per_model = [], []
        for ev in evs:
            preds = predictions(results, ev, data.names)
            if not preds:
                continue
            errs = [image_errors(gt, preds[name], threshold=ERROR_THRESHOLD, image=name)
                    for name, gt in zip(data.names, data.gt) if name in preds]
            summaries.append((ev.entry.model, error_summary(errs)))
            if ev.entry.seed == min(e.entry.seed for e in evs):  # maps show one draw per model
                per_model.append((ev.entry.model, preds, {e.image: e for e in errs}))
        if not summaries:
            continue
        tables += [_bin_table(context, setting, "area", summaries),
                   _bin_table(context, setting, "eccentricity", summaries),
                   _split_merge_table(context, setting, summaries)]
        where = context[:3]
        if n_images and where not in mapped:
            mapped.add(where)
            for j, (name, sample, gt) in enumerate(list(zip(data.names, data.samples, data.gt))[:n_images]):
                panels = [(model, preds[name], errs[name]) for model, preds, errs in per_model
                          if name in preds][:MAX_MAP_MODELS]
                if not panels:
                    continue
                try:
                    image = sample.load_image()
                except Exception as exc:
                    log.warning("no error map for %s: %s", name, exc)
                    continue
                path = _error_figure(name, image, gt, panels, figures_dir / f"errors_{k}_{j}.png", setting)
                figures.append((f"Error map of {name}: true positives outlined green, false positives red, missed "
                                f"ground truth orange (IoU {ERROR_THRESHOLD}) — {setting}", path))
    return tables, figures
