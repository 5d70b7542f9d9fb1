"""Data efficiency (CellSeg1 Figs. 3-5): score against the number of training images and of training cells.

A run with several training regimes (0, 1, 5, ... images) and several draws
(seeds: each seed picks its own training images) gives one
:class:`EfficiencyPoint` per method, regime and draw. :func:`efficiency_bands`
groups the draws of each method and regime: the mean score, its sample sd
(ddof 1, divided by n - 1; None for one draw) and the min-max band, at the
mean number of training images and the mean number of annotated training
cells of the draws. :func:`efficiency_figure` draws both views, score against
images and against cells, the line through the means and the min-max band
shaded, every draw a dot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cellbench.errors import DataError

__all__ = ["EfficiencyBand", "EfficiencyPoint", "efficiency_bands", "efficiency_figure", "efficiency_rows"]


@dataclass(frozen=True)
class EfficiencyPoint:
    """One trained (or zero-shot) model of one draw: how much it saw and how it scored."""

    method: str
    regime: str
    seed: int
    train_images: int
    train_cells: int | None
    score: float | None


@dataclass(frozen=True)
class EfficiencyBand:
    """The draws of one method and regime, summarised."""

    method: str
    regime: str
    n_draws: int
    train_images: float
    train_cells: float | None
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None


def efficiency_bands(points: Iterable[EfficiencyPoint]) -> tuple[EfficiencyBand, ...]:
    """Summarise the draws of each (method, regime), ordered by method then training images.

    >>> pts = [EfficiencyPoint("m", "one", s, 1, 10 + s, 0.5 + 0.1 * s) for s in range(3)]
    >>> b = efficiency_bands(pts)[0]
    >>> b.n_draws, b.train_cells, round(b.mean, 4), round(b.sd, 4), b.low, b.high
    (3, 11.0, 0.6, 0.1, 0.5, 0.7)
    """
    groups: dict[tuple[str, str], list[EfficiencyPoint]] = {}
    for p in points:
        groups.setdefault((p.method, p.regime), []).append(p)
    bands = []
    for (method, regime), pts in groups.items():
        scores = np.array([p.score for p in pts if p.score is not None], dtype=np.float64)
        cells = [p.train_cells for p in pts if p.train_cells is not None]
        bands.append(EfficiencyBand(
            method, regime, len(pts), float(np.mean([p.train_images for p in pts])),
            float(np.mean(cells)) if len(cells) == len(pts) else None,
            float(scores.mean()) if scores.size else None,
            float(scores.std(ddof=1)) if scores.size > 1 else None,
            float(scores.min()) if scores.size else None,
            float(scores.max()) if scores.size else None,
        ))
    order = list(dict.fromkeys(m for m, _ in groups))
    return tuple(sorted(bands, key=lambda b: (order.index(b.method), b.train_images, b.regime)))


def efficiency_rows(bands: Iterable[EfficiencyBand]) -> list[dict]:
    """One tidy dict per method and regime."""
    return [asdict(b) for b in bands]


def efficiency_figure(points: Sequence[EfficiencyPoint], path: str | Path, *, score_label: str,
                      title: str = "") -> Path:
    """Two panels, score against training images and against training cells: mean line, min-max band, draws."""
    from cellbench.figures import new_figure, save_figure

    if not points:
        raise DataError("no data-efficiency points to draw")
    bands = efficiency_bands(points)
    fig = new_figure(9.0, 3.8)
    axes = fig.subplots(1, 2)
    methods = list(dict.fromkeys(b.method for b in bands))
    colors = [f"C{k % 10}" for k in range(len(methods))]
    for ax, x_of, x_band, xlabel in (
        (axes[0], lambda p: p.train_images, lambda b: b.train_images, "training images"),
        (axes[1], lambda p: p.train_cells, lambda b: b.train_cells, "annotated cells in the training images"),
    ):
        for method, color in zip(methods, colors):
            mine = [b for b in bands if b.method == method and x_band(b) is not None and b.mean is not None]
            if mine:
                x = [x_band(b) for b in mine]
                ax.plot(x, [b.mean for b in mine], marker="o", ms=3, color=color, label=method)
                ax.fill_between(x, [b.low for b in mine], [b.high for b in mine], color=color, alpha=0.2, lw=0)
            dots = [(x_of(p), p.score) for p in points if p.method == method and x_of(p) is not None
                    and p.score is not None]
            if dots:
                ax.scatter(*zip(*dots), s=8, color=color, alpha=0.6)
        xs = [x_band(b) for b in bands if x_band(b) is not None]
        if xs and min(xs) >= 0 and max(xs) > 10 * max(1.0, min(v for v in xs if v > 0) if any(xs) else 1.0):
            ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(score_label)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)
