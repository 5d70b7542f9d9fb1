"""Report figures (matplotlib, object API: no global pyplot state, no backend switch).

Each function draws one figure from evaluation (or grid entry) records and writes a PNG;
titles and axis labels carry the setting (threshold, aggregation) so a
figure, like a table, never shows a number without how it was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from cellbench.analysis import SeedAggregate
from cellbench.figures import hide_axes, new_figure, save_figure
from cellbench.instances import InstanceSet
from cellbench.report.overlay import CROSS, normalize_for_display
from cellbench.report.results import EntryEvaluation, threshold_key
from cellbench.report.tables import COUNT_BINS
from cellbench.runner import EntryRecord

__all__ = [
    "GT_COLOR",
    "PRED_COLOR",
    "context_figure",
    "outline_overlay",
    "published_figure",
    "qualitative_panel",
    "seed_figure",
    "training_curves",
]

GT_COLOR = (80, 200, 255)  # light blue, as the NeurIPS report and the Glioma paper draw ground truth
PRED_COLOR = (255, 0, 0)


def _wrap(text: str, width: int = 95) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _metric_bars(ax, evs: Sequence[EntryEvaluation], threshold: float) -> None:
    metrics = (("f1", "F1"), ("dice", "Dice"), ("precision", "Precision"), ("recall", "Recall"))
    tk = threshold_key(threshold)
    x = np.arange(len(evs))
    width = 0.8 / len(metrics)
    for k, (key, label) in enumerate(metrics):
        values = [(ev.evaluation.result.get("image_mean", {}).get(tk, {}).get(key) or 0.0) for ev in evs]
        ax.bar(x + (k - 1.5) * width, values, width, label=label)
    ax.set_xticks(x, [ev.entry.model for ev in evs], rotation=25, ha="right", fontsize=7)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel(f"per-image mean (IoU {threshold})")
    ax.legend(fontsize=7, ncols=4, loc="upper center")
    ax.set_title("Metric comparison", fontsize=9)


def _f1_threshold(ax, evs: Sequence[EntryEvaluation]) -> None:
    for ev in evs:
        ts = sorted(ev.evaluation.thresholds)
        f1 = [ev.evaluation.result.get("image_mean", {}).get(threshold_key(t), {}).get("f1") for t in ts]
        ax.plot(ts, [np.nan if v is None else v for v in f1], marker="o", label=ev.entry.model)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("per-image mean F1")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("F1 vs IoU threshold", fontsize=9)


def _count_bins(ax, evs: Sequence[EntryEvaluation], threshold: float) -> None:
    tk = threshold_key(threshold)
    x = np.arange(len(COUNT_BINS))
    width = 0.8 / max(len(evs), 1)
    for k, ev in enumerate(evs):
        means = []
        for _, lo, hi in COUNT_BINS:
            f1 = [_img_f1(img, tk) for img in ev.evaluation.result.get("per_image", ())
                  if lo <= img.get("n_gt", 0) <= hi]
            f1 = [v for v in f1 if v is not None]
            means.append(np.mean(f1) if f1 else np.nan)
        ax.bar(x + (k - (len(evs) - 1) / 2) * width, means, width, label=ev.entry.model)
    ax.set_xticks(x, [b[0] for b in COUNT_BINS])
    ax.set_xlabel("ground-truth cells per image")
    ax.set_ylabel(f"mean F1 (IoU {threshold})")
    ax.set_ylim(0, 1.05)
    ax.set_title("Performance by cell count (empty bin: no image)", fontsize=9)


def context_figure(evs: Sequence[EntryEvaluation], path: Path, *, threshold: float = 0.5) -> Path:
    """Three panels for one setting: metric comparison bars (F1, Dice, precision, recall per model),
    F1 against the IoU threshold, and mean F1 by GT cell-count bin."""
    fig = new_figure(16.0, 4.8)
    axes = fig.subplots(1, 3, width_ratios=(1.4, 1, 1))
    _metric_bars(axes[0], evs, threshold)
    _f1_threshold(axes[1], evs)
    _count_bins(axes[2], evs, threshold)
    fig.suptitle(_wrap(evs[0].setting() + "; per-image scores, mean over images", 150), fontsize=9)
    return save_figure(fig, path)


def training_curves(entries: Sequence[EntryRecord], path: Path) -> Path | None:
    """Training loss (solid) and validation score (dashed, right axis) per epoch."""
    trained = [(e, e.training.history) for e in entries
               if e.training and e.training.history and e.training.history.get("epochs")]
    if not trained:
        return None
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    ax2 = None
    for entry, history in trained:
        epochs = history["epochs"]
        line, = ax.plot([e["epoch"] for e in epochs], [e["loss"] for e in epochs], label=f"{entry.model} {entry.task}")
        vals = [(e["epoch"], e["val_score"]) for e in epochs if e.get("val_score") is not None]
        if vals:
            ax2 = ax2 or ax.twinx()
            ax2.plot(*zip(*vals), linestyle="--", color=line.get_color())
            ax2.set_ylabel(f"validation ({history.get('val_metric') or 'score'}), dashed")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss, solid")
    ax.legend(fontsize=7)
    ax.set_title("Training curves as reported by each method", fontsize=9)
    return save_figure(fig, path)


def seed_figure(aggregates: Sequence[SeedAggregate], path: Path, *, threshold: float = 0.5) -> Path | None:
    """Pooled F1 at ``threshold`` against the overlapping ground truth, one panel per dataset / task / split /
    boundary rule: each seed's score as a dot, the mean across seeds as a bar with a sample-sd error bar.

    ``None`` when no aggregate has that F1 against overlapping ground truth.
    """
    metric = f"f1@{threshold_key(threshold)}"
    panels: dict[tuple, list[SeedAggregate]] = {}
    for a in aggregates:
        if a.ground_truth == "overlap" and a.spread(metric).n_seeds:
            panels.setdefault((a.dataset, a.task, a.split, a.boundary_px), []).append(a)
    if not panels:
        return None
    n_cols = min(3, len(panels))
    n_rows = -(-len(panels) // n_cols)
    widest = max(len(aggs) for aggs in panels.values())
    width = min(18.0, n_cols * max(4.0, 0.7 * widest + 1.5))
    fig = new_figure(width, 3.6 * n_rows + 0.8)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, ((dataset, task, split, boundary), aggs) in zip(axes, panels.items()):
        spreads = [a.spread(metric) for a in aggs]
        x = np.arange(len(aggs))
        ax.bar(x, [s.mean for s in spreads], 0.6, color="#c9daf8", edgecolor="#6d8fc7", label="mean across seeds")
        ax.errorbar(x, [s.mean for s in spreads], yerr=[0.0 if s.sd is None else s.sd for s in spreads],
                    fmt="none", ecolor="black", capsize=4, label="± sample sd (ddof 1)")
        for k, s in enumerate(spreads):
            offsets = np.linspace(-0.15, 0.15, s.n_seeds) if s.n_seeds > 1 else np.zeros(1)
            ax.scatter(k + offsets, s.values, s=14, color="#b22222", zorder=3,
                       label="one seed" if k == 0 else None)
        ax.set_xticks(x, [a.model for a in aggs], rotation=25, ha="right", fontsize=7)
        ax.set_ylim(0, 1.25)  # room for the legend above 1
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel(f"pooled F1@{threshold}")
        where = f"{dataset} / {task} / split {split or 'all'}" + (f" / {boundary} px frame" if boundary else "")
        ax.set_title(_wrap(where, 60), fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    axes[0].legend(fontsize=6, loc="upper center", ncols=3)
    fig.suptitle(_wrap(f"F1 at IoU {threshold} against the overlapping ground truth, pooled over images (TP, FP, FN "
                       f"summed); dots: one training seed each; bar and error bar: mean ± sample sd across seeds "
                       f"(no error bar with one seed)", int(12 * width)), fontsize=9)
    return save_figure(fig, path)


def count_bin_plot(evs: Sequence[EntryEvaluation], path: Path, *, threshold: float = 0.5) -> Path:
    """Mean F1 per GT cell-count bin, bars per model."""
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    _count_bins(ax, evs, threshold)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(_wrap(evs[0].setting(), 80), fontsize=8)
    return save_figure(fig, path)


def _img_f1(img: dict, tk: str):
    return (img.get("by_iou") or {}).get(tk, {}).get("f1")


def _paint(rgb: np.ndarray, instances: InstanceSet, color: tuple[int, int, int], origin: tuple[int, int] = (0, 0)) -> None:
    """Paint the inner border of each instance into ``rgb``, a window of the image starting at ``origin``."""
    oy, ox = origin
    h, w = rgb.shape[:2]
    for inst in instances:
        y0, x0, y1, x1 = inst.bbox
        if y1 <= oy or x1 <= ox or y0 >= oy + h or x0 >= ox + w:
            continue
        border = inst.mask & ~ndimage.binary_erosion(inst.mask, CROSS, border_value=0)
        ys, xs = np.nonzero(border)
        ys, xs = ys + y0 - oy, xs + x0 - ox
        keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        rgb[ys[keep], xs[keep]] = color


def outline_overlay(
    image: np.ndarray,
    gt: InstanceSet | None,
    pred: InstanceSet | None,
    *,
    window: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """RGB image (or its ``window``) with GT borders light blue and prediction borders red (on top)."""
    shown = normalize_for_display(image)
    if window is not None:
        shown = shown[window]
    origin = (0, 0) if window is None else (window[0].start or 0, window[1].start or 0)
    rgb = np.repeat(shown[..., None], 3, axis=-1) if shown.ndim == 2 else shown[..., :3].copy()
    if gt is not None:
        _paint(rgb, gt, GT_COLOR, origin)
    if pred is not None:
        _paint(rgb, pred, PRED_COLOR, origin)
    return rgb


def qualitative_panel(
    rows: Sequence[tuple[str, np.ndarray, InstanceSet, Sequence[tuple[str, InstanceSet, float | None]]]],
    path: Path,
    *,
    title: str,
    crop: int = 512,
) -> Path:
    """One row per image: the image, its GT, then each model's prediction over the GT.

    ``rows`` holds ``(image name, pixels, gt, [(model, prediction, F1), ...])``;
    images larger than ``crop`` are cut to a centred ``crop`` x ``crop`` window
    so that one-pixel borders stay visible.
    """
    n_cols = 2 + max(len(r[3]) for r in rows)
    fig = new_figure(2.6 * n_cols, 2.8 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (name, image, gt, preds) in enumerate(rows):
        h, w = image.shape[:2]
        y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        plain = outline_overlay(image, None, None, window=window)
        with_gt = plain.copy()  # what outline_overlay(image, gt, None, window=window) draws, painted once
        _paint(with_gt, gt, GT_COLOR, (y0, x0))
        panels = [(f"{name}", plain), ("ground truth (light blue)", with_gt)]
        for model, pred, f1 in preds:
            picture = with_gt.copy()
            _paint(picture, pred, PRED_COLOR, (y0, x0))
            panels.append((f"{model}\nF1 {'n/a' if f1 is None else f'{f1:.3f}'} (red)", picture))
        for c, ax in enumerate(axes[r]):
            hide_axes(ax)
            if c < len(panels):
                ax.imshow(panels[c][1], interpolation="nearest")
                ax.set_title(panels[c][0], fontsize=7)
    fig.suptitle(_wrap(title, 120), fontsize=8)
    return save_figure(fig, path)


def published_figure(points: Sequence[dict], path: Path, *, title: str = "") -> Path | None:
    """Published numbers (x) against this run's (y), fractions, with this run's interval as an error bar.

    ``points``: dicts with ``published``, ``measured``, ``low``, ``high`` (None: no interval), ``group`` (one
    colour each: the paper's table), ``certain`` (False: hollow marker) and ``relation`` (``>``: a lower bound,
    drawn as a right-pointing triangle). ``None`` when no point has both numbers.
    """
    shown = [p for p in points if p.get("published") is not None and p.get("measured") is not None]
    if not shown:
        return None
    fig = new_figure(7.5, 6.6)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#888888", lw=0.8, ls="--", label="this run = published")
    groups = list(dict.fromkeys(p["group"] for p in shown))
    colors = [f"C{k % 10}" for k in range(len(groups))]
    for group, color in zip(groups, colors):
        mine = [p for p in shown if p["group"] == group]
        for p in mine:
            if p.get("low") is not None:
                ax.plot([p["published"]] * 2, [p["low"], p["high"]], color=color, lw=0.8, alpha=0.7)
        for certain in (True, False):
            for relation, marker in (("=", "o"), (">", ">")):
                sel = [p for p in mine if bool(p.get("certain", True)) == certain and p.get("relation", "=") == relation]
                if not sel:
                    continue
                ax.scatter([p["published"] for p in sel], [p["measured"] for p in sel], s=22, marker=marker,
                           facecolors=color if certain else "none", edgecolors=color, zorder=3,
                           label=_wrap(group, 50) if certain and relation == "=" else None)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("published (fraction)")
    ax.set_ylabel("this run (fraction); bar: its interval")
    ax.legend(fontsize=6, loc="upper left")
    ax.set_title(_wrap(title or "Published against this run: hollow = uncertain reading, triangle = lower bound",
                       80), fontsize=8)
    return save_figure(fig, path)
