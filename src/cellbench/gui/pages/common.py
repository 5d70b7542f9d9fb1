"""What every page shares: the navigation bar, the image viewer, error reporting."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
from nicegui import run, ui

from cellbench.errors import DataError
from cellbench.gui.render import png_bytes

__all__ = ["PAGES", "Viewer", "frame", "guarded", "in_thread"]

log = logging.getLogger(__name__)

PAGES = (("Data", "/data"), ("Annotate", "/annotate"), ("Train", "/train"), ("Predict", "/predict"),
         ("Compare", "/compare"), ("Jobs", "/jobs"))


def frame(title: str) -> None:
    """The page header: the cellbench name, one link per page, the page title."""
    with ui.header().classes("items-center gap-4 bg-slate-800"):
        ui.label("cellbench").classes("text-lg font-bold")
        for name, path in PAGES:
            ui.link(name, path).classes("text-white").props(f'data-testid="nav-{name.lower()}"')
    ui.label(title).classes("text-2xl")


def report_error(exc: BaseException) -> None:
    """Show a cellbench error (bad input) as the CLI would print it; anything else as an internal error."""
    if isinstance(exc, DataError):
        ui.notify(f"error: {exc}", type="negative", multi_line=True, timeout=10000)
    else:
        log.exception("GUI action failed", exc_info=exc)
        ui.notify(f"internal error: {type(exc).__name__}: {exc}", type="negative", multi_line=True, timeout=10000)


def guarded(action: Callable) -> Callable:
    """An event handler that shows errors in the page instead of losing them in the server log."""

    @functools.wraps(action)
    async def wrapper(*args, **kwargs):
        try:
            result = action(*args, **kwargs)
            if hasattr(result, "__await__"):
                result = await result
            return result
        except Exception as exc:  # every failure reaches the user
            report_error(exc)

    return wrapper


async def in_thread(fn: Callable, *args, **kwargs):
    """Run blocking work (reading a dataset, a SAM prompt) off the event loop."""
    return await run.io_bound(fn, *args, **kwargs)


class Viewer:
    """An image with an SVG overlay, zoom (slider) and pan (scroll the frame), and optional mouse events."""

    def __init__(self, ctx, *, on_mouse: Callable | None = None, events: tuple[str, ...] = (),
                 testid: str = "viewer", max_height: str = "70vh") -> None:
        self.ctx = ctx
        self.width = 0
        with ui.row().classes("items-center"):
            ui.label("zoom")
            self.zoom = ui.slider(min=0.25, max=8, step=0.25, value=1.0, on_change=lambda _: self._apply()) \
                .classes("w-64").props(f'data-testid="{testid}-zoom"')
            self.zoom_label = ui.label("1x")
        with ui.element("div").style(f"overflow: auto; max-width: 100%; max-height: {max_height}; "
                                     "border: 1px solid #bbb; background: #222") as self.frame:
            self.image = ui.interactive_image(events=list(events), on_mouse=on_mouse, sanitize=False,
                                              cross=bool(on_mouse)).props(f'data-testid="{testid}"')
        self.image.set_visibility(False)

    def show(self, image: np.ndarray, svg: str = "") -> None:
        self.width = int(image.shape[1])
        self.image.set_source(self.ctx.put_png(png_bytes(image)))
        self.image.content = svg
        self.image.set_visibility(True)
        self._apply()

    def overlay(self, svg: str) -> None:
        self.image.content = svg

    def _apply(self) -> None:
        z = float(self.zoom.value)
        self.zoom_label.text = f"{z:g}x"
        if self.width:
            self.image.style(f"width: {self.width * z}px; max-width: none")
