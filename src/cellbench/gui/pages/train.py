"""Train: a method (CellSeg1 by default) on a dataset or an annotation set, as a queued job.

The job runs ``cellbench train`` (see :mod:`cellbench.gui.worker`) and writes a normal
model directory under ``models/``, which ``cellbench predict`` and the Predict page load.
A torch method trains on the job's share of the cores, given as ``threads`` in its config
(:func:`job_config`), as a user would give it.
"""

from __future__ import annotations

import dataclasses

import yaml
from nicegui import ui

from cellbench.data import LAYOUTS
from cellbench.errors import DataError
from cellbench.gui.pages.common import frame, guarded
from cellbench.gui.pages.job_view import JobView
from cellbench.gui.workspace import safe_name
from cellbench.methods import METHODS, get_method

__all__ = ["MODELS", "job_config", "register", "train_argv"]

MODELS = "models"


def train_argv(ctx, *, method: str, data: str, layout: str, out: str, split: str | None = None,
               images: int | None = None, preset: str | None = None, with_config: bool = False) -> list[str]:
    """The ``cellbench train`` command line for the form's values (paths checked inside the workspace)."""
    ws = ctx.workspace
    target = ws.resolve(f"{MODELS}/{safe_name(out, 'model name')}")
    if target.exists():
        raise DataError("a model of that name exists; choose another name", path=f"{MODELS}/{out}")
    argv = ["train", method, "--data", str(ws.resolve(data)), "--layout", layout, "--out", str(target)]
    if split:
        argv += ["--split", safe_name(split, "split")]  # a split is a sub-folder: no path
    if images:
        argv += ["--images", str(int(images))]
    if preset:
        argv += ["--preset", preset]
    if with_config:
        argv += ["--config", "{job}/config.yaml"]
    return argv


def job_config(method: str, text: str, *, preset: str | None, threads: int) -> str | None:
    """The config file of a training job (None: none to write): the settings typed on the page and, for a
    method with a ``threads`` field, ``threads`` (the job's share of the cores) unless they or the preset
    name a count.

    The count is part of what a CPU training computes (:mod:`cellbench.methods.device`): given in the
    config, it is recorded in the model directory, and the same config trains the same weights from the
    command line. Text that is not a mapping of settings goes unchanged, for ``cellbench train`` to refuse.

    >>> print(job_config("unet", "train: {epochs: 4}", preset=None, threads=2), end="")
    train:
      epochs: 4
    threads: 2
    >>> print(job_config("unet", "threads: 1", preset=None, threads=2))
    threads: 1
    >>> job_config("watershed", "", preset=None, threads=2) is None
    True
    """
    text = text.strip()
    try:
        values = yaml.safe_load(text) if text else {}
        cls = get_method(method)
    except (yaml.YAMLError, DataError):
        return text or None
    values = {} if values is None else values
    if not isinstance(values, dict) or "threads" not in {f.name for f in dataclasses.fields(cls.Config)}:
        return text or None
    if "threads" in values or "threads" in cls.presets.get(preset or "", {}):
        return text or None
    return yaml.safe_dump({**values, "threads": int(threads)}, sort_keys=False)


def _presets(method: str) -> list[str]:
    try:
        return sorted(get_method(method).presets)
    except DataError:
        return []


def register(ctx) -> None:
    ws = ctx.workspace

    @ui.page("/train")
    def train_page() -> None:
        frame("Train")
        with ui.row().classes("items-end"):
            method = ui.select(sorted(METHODS), label="method",
                               value="cellseg1" if "cellseg1" in METHODS else sorted(METHODS)[0]) \
                .classes("w-40").props('data-testid="train-method"')
            data = ui.select(ws.dataset_candidates(), label="training data (path in the workspace)", with_input=True) \
                .classes("w-96").props('data-testid="train-data"')
            layout = ui.select(list(LAYOUTS), label="layout", value="coco").classes("w-36") \
                .props('data-testid="train-layout"')
            split = ui.input("split (optional)").classes("w-28")
            images = ui.number("first N images", min=1, precision=0).classes("w-32")
        with ui.row().classes("items-end"):
            preset = ui.select(_presets(method.value), label="preset", clearable=True,
                               value="cpu" if "cpu" in _presets(method.value) else None).classes("w-32") \
                .props('data-testid="train-preset"')
            name = ui.input("model name", value="my-model").classes("w-48").props('data-testid="train-name"')
            start = ui.button("Start training", icon="play_arrow").props('data-testid="train-start"')
        config = ui.textarea("settings over the preset (YAML, optional; e.g. train: {epochs: 4})") \
            .classes("w-full font-mono").props('data-testid="train-config"')

        def on_method(e) -> None:
            options = _presets(e.value)
            preset.options = options
            preset.value = "cpu" if "cpu" in options else None
            preset.update()

        method.on_value_change(on_method)
        ui.label("Jobs").classes("text-xl")
        jobs_box = ui.column().classes("w-full")

        def show_jobs() -> None:
            jobs_box.clear()
            with jobs_box:
                for job in reversed([j for j in ctx.jobs.jobs() if j.spec.get("kind") == "train"][-5:]):
                    JobView(ctx, job)

        @guarded
        def on_start() -> None:
            if not data.value:
                ui.notify("choose training data", type="warning")
                return
            text = job_config(method.value, config.value or "", preset=preset.value,
                              threads=ctx.jobs.threads_per_job)
            argv = train_argv(ctx, method=method.value, data=data.value, layout=layout.value, out=name.value,
                              split=split.value or None, images=images.value, preset=preset.value,
                              with_config=text is not None)
            files = {"config.yaml": text.rstrip("\n") + "\n"} if text else None
            ctx.jobs.submit("train", argv, title=f"train {method.value} on {data.value} -> {MODELS}/{name.value}",
                            out=f"{MODELS}/{name.value}", files=files)
            show_jobs()

        start.on_click(on_start)
        show_jobs()
