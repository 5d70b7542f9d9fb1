"""Jobs: every training and prediction job of the workspace, newest first, with its log."""

from __future__ import annotations

from nicegui import ui

from cellbench.gui.pages.common import frame
from cellbench.gui.pages.job_view import JobView

__all__ = ["register"]


def register(ctx) -> None:
    @ui.page("/jobs")
    def jobs_page() -> None:
        frame("Jobs")
        jobs = list(reversed(ctx.jobs.jobs()))
        running = sum(j.state == "running" for j in jobs)
        ui.label(f"{len(jobs)} jobs, {running} running, {sum(j.state == 'queued' for j in jobs)} queued; "
                 f"{ctx.jobs.slots} at a time (one per CPU slot). Jobs keep running when this page closes.") \
            .props('data-testid="jobs-summary"')
        for k, job in enumerate(jobs[:30]):  # the newest open, and every running or failed one
            with ui.expansion(f"{job.spec.get('title', job.id)} [{job.state}]",
                              value=k == 0 or job.state in ("running", "failed")).classes("w-full"):
                JobView(ctx, job, show_log=True)
