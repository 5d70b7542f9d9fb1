"""A job's live view: state, progress bar, ETA, loss curve, log, Stop and Resume (refreshed every second)."""

from __future__ import annotations

from nicegui import ui

from cellbench.gui.jobs import Job
from cellbench.gui.pages.common import guarded

__all__ = ["JobView", "describe_progress", "format_eta"]


def format_eta(seconds: float | None) -> str:
    """Seconds in words, for an ETA.

    >>> format_eta(75), format_eta(None), format_eta(4000)
    ('1 min 15 s', '?', '1 h 6 min')
    """
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def describe_progress(progress: dict) -> str:
    """The bars in words: ``cellseg1 epochs 3/8 · patches 10/42``."""
    bars = progress.get("bars") or []
    return " · ".join(f"{b.get('desc') or 'step'} {b['n']}/{b.get('total') or '?'}" for b in bars)


class JobView:
    """A card showing one job; ``on_change`` runs after Stop / Resume."""

    def __init__(self, ctx, job: Job, *, show_log: bool = False) -> None:
        self.ctx, self.job = ctx, job
        with ui.card().classes("w-full").props(f'data-testid="job-{job.id}"'):
            spec = job.spec
            with ui.row().classes("items-center"):
                ui.label(spec.get("title", job.id)).classes("font-bold")
                self.state = ui.badge("").props('data-testid="job-state"')
                self.stop = ui.button("Stop", on_click=self._stop, color="negative").props(
                    'dense data-testid="job-stop"')
                self.resume = ui.button("Resume", on_click=self._resume).props('dense data-testid="job-resume"')
            ui.label("cellbench " + " ".join(spec.get("argv", []))).classes("text-xs font-mono")
            self.bar = ui.linear_progress(value=0, show_value=False).props('instant-feedback data-testid="job-progress"')
            self.words = ui.label("").props('data-testid="job-progress-text"')
            self.chart = ui.echart({
                "animation": False, "grid": {"left": 50, "right": 10, "top": 25, "bottom": 30},
                "title": {"text": "training loss per epoch", "textStyle": {"fontSize": 12}},
                "xAxis": {"type": "value", "name": "epoch", "minInterval": 1},
                "yAxis": {"type": "value", "scale": True},
                "series": [{"type": "line", "data": [], "showSymbol": True}],
            }).classes("w-full h-48").props('data-testid="job-loss"')
            self.chart.set_visibility(False)
            self.log = ui.code("", language="text").classes("w-full text-xs") if show_log else None
        self.refresh()
        ui.timer(1.0, self.refresh)

    def refresh(self) -> None:
        status, progress = self.job.status, self.job.progress
        state = status.get("state", "queued")
        self.state.text = state
        self.state.props(f'color={ {"done": "positive", "failed": "negative", "running": "primary"}.get(state, "grey")}')
        fraction = 1.0 if state == "done" else float(progress.get("fraction") or 0.0)
        self.bar.value = fraction
        eta = "" if state != "running" else f" · ETA {format_eta(progress.get('eta_s'))}"
        message = f" · {status['message']}" if status.get("message") else ""
        self.words.text = f"{state} · {fraction:.0%} · {describe_progress(progress)}{eta}{message}"
        self.stop.set_visibility(state in ("queued", "running"))
        self.resume.set_visibility(state in ("stopped", "failed"))
        losses = self.job.losses
        if losses:
            self.chart.set_visibility(True)
            self.chart.options["series"][0]["data"] = [[r["epoch"], r["loss"]] for r in losses]
            self.chart.update()
        if self.log is not None:
            tail = self.job.log_tail()
            if tail != self.log.content:
                self.log.content = tail

    @guarded
    async def _stop(self) -> None:
        from nicegui import run

        await run.io_bound(self.ctx.jobs.stop, self.job.id)
        self.refresh()

    @guarded
    def _resume(self) -> None:
        self.ctx.jobs.resume(self.job.id)
        self.refresh()
