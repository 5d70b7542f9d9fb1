"""Figures of a morphology table: distributions per class, and the Glioma C6 Fig. 2c scatter.

Each source (ground truth, prediction) gets its own column of panels, side
by side on shared axes, so predicted shapes can be read against the
annotated ones. matplotlib's object API (no pyplot state); PNGs are written
atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellbench.analysis.morphology import MorphologyRecord
from cellbench.figures import new_figure, save_figure

__all__ = ["DISTRIBUTION_MEASURES", "morphology_figures"]

#: The measures whose per-class histograms are drawn (Glioma C6 Fig. 2).
DISTRIBUTION_MEASURES = ("area", "eccentricity", "solidity")


def _groups(records: Sequence[MorphologyRecord]) -> tuple[list[str], list[str]]:
    sources = list(dict.fromkeys(r.source for r in records))
    classes = list(dict.fromkeys(r.class_name for r in records))
    return sources, classes


def _values(records: Sequence[MorphologyRecord], measure: str, source: str, cls: str) -> np.ndarray:
    vals = [getattr(r.shape, measure) for r in records if r.source == source and r.class_name == cls]
    return np.array([v for v in vals if v is not None], dtype=np.float64)


def _distributions(records: Sequence[MorphologyRecord], sources: list[str], classes: list[str], label: str):
    fig = new_figure(4.2 * len(sources), 2.6 * len(DISTRIBUTION_MEASURES))
    axes = fig.subplots(len(DISTRIBUTION_MEASURES), len(sources), squeeze=False)
    for i, measure in enumerate(DISTRIBUTION_MEASURES):
        every = np.array([getattr(r.shape, measure) for r in records if getattr(r.shape, measure) is not None], float)
        bins = np.histogram_bin_edges(every, bins=20) if every.size else 20
        for j, source in enumerate(sources):
            ax = axes[i, j]
            for cls in classes:
                vals = _values(records, measure, source, cls)
                if vals.size:
                    ax.hist(vals, bins=bins, histtype="step", linewidth=1.5, label=f"{cls} (n={vals.size})")
            ax.set_xlabel(measure + (" (px)" if measure == "area" else ""), fontsize=8)
            ax.set_ylabel("instances", fontsize=8)
            ax.set_title(f"{source}: {measure}", fontsize=9)
            ax.tick_params(labelsize=7)
            if ax.has_data():
                ax.legend(fontsize=7)
    fig.suptitle(f"Shape distributions per class: {label}", fontsize=10)
    return fig


def _scatter(records: Sequence[MorphologyRecord], sources: list[str], classes: list[str], label: str):
    fig = new_figure(4.6 * len(sources), 4.0)
    axes = fig.subplots(1, len(sources), squeeze=False, sharex=True, sharey=True)[0]
    areas = np.array([r.shape.area for r in records], dtype=np.float64)
    scale = 120.0 / areas.max() if areas.size and areas.max() > 0 else 1.0
    colors = {cls: f"C{k % 10}" for k, cls in enumerate(classes)}
    for ax, source in zip(axes, sources):
        for cls in classes:
            sel = [r for r in records if r.source == source and r.class_name == cls]
            if sel:
                ax.scatter([r.shape.eccentricity for r in sel], [r.shape.solidity for r in sel],
                           s=[max(4.0, r.shape.area * scale) for r in sel], c=colors[cls], alpha=0.5,
                           edgecolors="none", label=f"{cls} (n={len(sel)})")
        ax.set_xlabel("eccentricity", fontsize=8)
        ax.set_ylabel("solidity", fontsize=8)
        ax.set_title(source, fontsize=9)
        ax.tick_params(labelsize=7)
        if ax.has_data():
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Solidity vs eccentricity, marker area proportional to cell area: {label}", fontsize=10)
    return fig


def morphology_figures(records: Sequence[MorphologyRecord], out_dir: str | Path, *, label: str = "") -> list[Path]:
    """Write ``morphology_distributions.png`` and ``morphology_scatter.png`` into ``out_dir``; return their paths.

    ``label`` names the data in the titles (dataset, split, task, prediction folder).
    """
    records = list(records)
    out_dir = Path(out_dir)
    sources, classes = _groups(records)
    sources = sources or ["ground truth"]
    return [
        save_figure(_distributions(records, sources, classes, label), out_dir / "morphology_distributions.png"),
        save_figure(_scatter(records, sources, classes, label), out_dir / "morphology_scatter.png"),
    ]
