"""Things people look at: overlays now; tables, plots and HTML reports later."""

from cellbench.report.overlay import draw_outlines, normalize_for_display

__all__ = ["draw_outlines", "normalize_for_display"]
