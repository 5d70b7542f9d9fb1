"""The GUI server: NiceGUI pages on FastAPI, guarded by :mod:`cellbench.gui.security`.

Why NiceGUI: the page state lives in Python next to cellbench's own objects, and
the browser talks to it over one websocket, so a job's progress, a loss curve or
a new SAM proposal reach the page as soon as the server has them (timers push,
nothing polls the disk from JavaScript); ``ui.interactive_image`` gives image
pixel coordinates for clicks and drags and draws an SVG overlay on the image,
which is what annotation and outline viewing need; and it is a FastAPI app, so
the token check, the upload limit and the workspace file route are plain ASGI /
FastAPI code. Every page is ordinary HTML that Playwright drives in Chromium.
"""

from __future__ import annotations

import collections
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cellbench.errors import DataError
from cellbench.gui.jobs import JobQueue
from cellbench.gui.sam_prompt import PromptSegmenter
from cellbench.gui.uploads import MAX_DECODED_BYTES
from cellbench.gui.workspace import Workspace

__all__ = ["GuiContext", "build_app", "serve"]

SERVED_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".csv": "text/csv",
                   ".json": "application/json", ".txt": "text/plain", ".html": "text/html",
                   ".tif": "image/tiff", ".tiff": "image/tiff"}


@dataclass
class GuiContext:
    """What every page shares: the workspace, the job queue, the SAM prompt model and rendered images."""

    workspace: Workspace
    jobs: JobQueue
    segmenter: PromptSegmenter
    max_upload_bytes: int = 50 * 2**20
    max_decoded_bytes: int = MAX_DECODED_BYTES
    _png: collections.OrderedDict = field(default_factory=collections.OrderedDict, repr=False)
    _png_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def put_png(self, data: bytes) -> str:
        """Keep a rendered PNG for the browser to fetch; returns its URL (an unguessable key)."""
        key = secrets.token_urlsafe(12)
        with self._png_lock:
            self._png[key] = data
            while len(self._png) > 32:  # the pages' current images; older ones are gone
                self._png.popitem(last=False)
        return f"/png/{key}"

    def get_png(self, key: str) -> bytes | None:
        with self._png_lock:
            return self._png.get(key)


def build_app(ctx: GuiContext, *, token: str | None) -> None:
    """Register the middleware, the two file routes and every page on NiceGUI's app."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse, Response
    from nicegui import app, ui

    from cellbench.gui.pages import annotate, compare, data, jobs, predict, train
    from cellbench.gui.security import GuardMiddleware

    app.add_middleware(GuardMiddleware, token=token, max_upload_bytes=ctx.max_upload_bytes)

    @app.get("/png/{key}")
    def png(key: str) -> Response:
        body = ctx.get_png(key)
        if body is None:
            raise HTTPException(404, "no such image")
        return Response(body, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/files/{relative:path}")
    def files(relative: str) -> FileResponse:
        """A workspace file (figures, tables) by its path relative to the workspace; nothing outside it."""
        try:
            path = ctx.workspace.resolve(relative)
        except DataError as exc:
            raise HTTPException(403, exc.problem) from None
        media = SERVED_SUFFIXES.get(path.suffix.lower())
        if media is None or not path.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(path, media_type=media)

    @ui.page("/")
    def index() -> None:
        ui.navigate.to("/data")

    for page in (data, annotate, train, predict, compare, jobs):
        page.register(ctx)

    def tick() -> None:
        try:
            ctx.jobs.tick()
        except Exception:  # a half-written job folder must not stop the scheduler
            import logging

            logging.getLogger(__name__).exception("job scheduler")

    app.timer(1.0, tick)  # app-wide: runs with no page open


def serve(workspace: str | Path, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          slots: int = 1, backbone: str = "litemedsam", checkpoint: str | None = None,
          max_upload_mb: float = 50, max_image_mb: float = MAX_DECODED_BYTES / 2**20, on_ready=print) -> None:
    """Run the GUI server until interrupted; ``on_ready`` gets the URL once it listens.

    ``max_upload_mb`` caps an uploaded file, ``max_image_mb`` the pixels it decodes to.
    """
    from nicegui import app, background_tasks, ui

    from cellbench.gui.security import LOOPBACK, new_token, redact_query_strings

    ws = Workspace(Path(workspace))
    if host not in LOOPBACK and token is None:
        token = new_token()
    ctx = GuiContext(workspace=ws, jobs=JobQueue(ws, slots=slots),
                     segmenter=PromptSegmenter(backbone, checkpoint), max_upload_bytes=int(max_upload_mb * 2**20),
                     max_decoded_bytes=int(max_image_mb * 2**20))
    build_app(ctx, token=token)
    redact_query_strings()  # the server's logs show no ?token=...
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

    async def announce() -> None:  # startup runs before uvicorn listens: say the URL once it accepts connections
        import asyncio

        for _ in range(1200):
            try:
                _, writer = await asyncio.open_connection(probe, port)
                writer.close()
                on_ready(url)
                return
            except OSError:
                await asyncio.sleep(0.05)

    app.on_startup(lambda: background_tasks.create(announce(), name="announce URL"))
    ui.run(host=host, port=port, reload=False, show=False, title="cellbench", show_welcome_message=False,
           uvicorn_logging_level="warning", fastapi_docs=False)
