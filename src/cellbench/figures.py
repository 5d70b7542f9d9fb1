"""Figures drawn off-screen with matplotlib's Agg canvas and written all or nothing.

Shared by :mod:`cellbench.analysis` and :mod:`cellbench.report`; matplotlib is
imported only when a figure is made, so importing this module costs nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

from cellbench.files import atomic_write_bytes

__all__ = ["hide_axes", "new_figure", "save_figure"]


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches at 100 dpi, constrained layout, no GUI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def hide_axes(ax) -> None:
    """Draw no axis on ``ax`` (an image panel): ``set_axis_off``, and both axes hidden too.

    An axis-off panel still has its tick labels laid out whenever its title is
    placed; hidden axes skip that work and draw the same pixels.
    """
    ax.set_axis_off()
    ax.xaxis.set_visible(False)
    ax.yaxis.set_visible(False)


def save_figure(fig, path: str | Path) -> Path:
    """Render ``fig`` in the format of ``path``'s suffix (PNG by default) and write it atomically."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    atomic_write_bytes(path, buf.getvalue())
    return path
