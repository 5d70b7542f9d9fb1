"""Predict: run a workspace model directory on images as a queued job, look at the outlines, download them.

The job runs ``cellbench predict`` (label TIFFs + ``predictions.json`` COCO with scores).
Downloads are written by cellbench's own writers (:mod:`cellbench.data.export`): the
label TIFF as predicted, the COCO file, an ImageJ ROI zip and a QuPath GeoJSON.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from nicegui import ui

from cellbench.data import Sample
from cellbench.data.export import to_coco, to_geojson, write_roi_zip
from cellbench.data.images import read_image, read_label_image
from cellbench.errors import DataError
from cellbench.gui.jobs import read_json
from cellbench.gui.pages.common import Viewer, frame, guarded, in_thread
from cellbench.gui.pages.job_view import JobView
from cellbench.gui.render import instances_svg
from cellbench.gui.workspace import safe_name
from cellbench.instances import InstanceSet

__all__ = ["PREDICTIONS", "read_predictions", "register"]

PREDICTIONS = "predictions"


def _source_images(ctx, pred_dir: Path) -> Path | None:
    """The images a GUI prediction job ran on (its ``--images``), when the job is still in the workspace."""
    for job in ctx.jobs.jobs():
        argv = job.spec.get("argv", [])
        if job.spec.get("kind") == "predict" and "--out" in argv and Path(argv[argv.index("--out") + 1]) == pred_dir:
            images = Path(argv[argv.index("--images") + 1])
            return images if images.is_dir() else images.parent
    return None


def read_predictions(ctx, pred_dir: Path) -> list[Sample]:
    """The predicted instances of a ``cellbench predict`` folder, one sample per image.

    From ``predictions.json`` (overlaps and scores kept; read by the ``coco`` layout reader) when the
    source images are known, else from the label TIFFs (flattened) without the images.
    """
    manifest = read_json(pred_dir / "cellbench-predict.json")
    if manifest is None:
        raise DataError("not a cellbench predict folder (no cellbench-predict.json)", path=pred_dir)
    ws = ctx.workspace
    source = _source_images(ctx, pred_dir)

    def inside(relative: str) -> Path:  # the manifest's paths, checked like the browser's
        return ws.resolve(f"{ws.relative(pred_dir)}/{relative}")

    if manifest.get("coco") and source is not None:
        return list(ws.read_dataset(inside(manifest["coco"]), "coco", image_dir=source).samples)
    samples = []
    for entry in manifest["images"]:
        labels = read_label_image(inside(entry["labels"]))
        image_path = source / entry["image"] if source is not None else None
        if image_path is not None and not (image_path.is_file() and image_path.resolve().is_relative_to(ws.root)):
            image_path = None
        samples.append(Sample(Path(entry["image"]).stem, InstanceSet.from_label_image(labels), image_path=image_path))
    return samples


def register(ctx) -> None:
    ws = ctx.workspace

    @ui.page("/predict")
    def predict_page() -> None:
        frame("Predict")
        with ui.row().classes("items-end"):
            model = ui.select(ws.model_dirs(), label="model directory", with_input=True).classes("w-80") \
                .props('data-testid="pred-model"')
            images = ui.select(ws.image_sources(), label="images (file or folder)", with_input=True) \
                .classes("w-96").props('data-testid="pred-images"')
            name = ui.input("output name", value="my-predictions").classes("w-48").props('data-testid="pred-name"')
            start = ui.button("Predict", icon="play_arrow").props('data-testid="pred-start"')
        jobs_box = ui.column().classes("w-full")

        def show_jobs() -> None:
            jobs_box.clear()
            with jobs_box:
                for job in reversed([j for j in ctx.jobs.jobs() if j.spec.get("kind") == "predict"][-3:]):
                    JobView(ctx, job)

        @guarded
        def on_start() -> None:
            if not model.value or not images.value:
                ui.notify("choose a model and images", type="warning")
                return
            out = ws.resolve(f"{PREDICTIONS}/{safe_name(name.value, 'output name')}")
            if out.exists():
                raise DataError("an output of that name exists; choose another name", path=f"{PREDICTIONS}/{name.value}")
            ws.folder(PREDICTIONS)
            argv = ["predict", str(ws.resolve(model.value)), "--images", str(ws.resolve(images.value)),
                    "--out", str(out)]
            ctx.jobs.submit("predict", argv, title=f"predict {images.value} with {model.value}",
                            out=f"{PREDICTIONS}/{name.value}")
            show_jobs()

        start.on_click(on_start)
        show_jobs()

        ui.label("Results").classes("text-xl")
        state: dict = {"samples": [], "dir": None}
        with ui.row().classes("items-end"):
            result = ui.select(ws.prediction_dirs(), label="prediction folder", with_input=True).classes("w-80") \
                .props('data-testid="pred-result"')
            refresh = ui.button(icon="refresh").props("flat")
            open_button = ui.button("Open").props('data-testid="pred-open"')
            image_select = ui.select([], label="image").classes("w-64").props('data-testid="pred-image"')
        info = ui.label("").props('data-testid="pred-info"')
        with ui.row():
            for fmt in ("labels", "coco", "roi", "geojson"):
                ui.button(f"Download {dict(labels='label TIFF', coco='COCO', roi='ImageJ ROI zip', geojson='GeoJSON')[fmt]}",
                          on_click=lambda fmt=fmt: download(fmt)).props(f'data-testid="pred-dl-{fmt}"')
        viewer = Viewer(ctx, testid="pred-viewer")

        def on_refresh() -> None:
            result.options = ws.prediction_dirs()
            result.update()

        @guarded
        async def on_open() -> None:
            if not result.value:
                return
            folder = ws.resolve(result.value)
            state["samples"] = await in_thread(read_predictions, ctx, folder)
            state["dir"] = folder
            image_select.options = [s.name for s in state["samples"]]
            image_select.value = image_select.options[0] if image_select.options else None
            image_select.update()

        @guarded
        async def on_image(e) -> None:
            sample = next((s for s in state["samples"] if s.name == e.value), None)
            if sample is None:
                return
            image = (await in_thread(read_image, sample.image_path) if sample.image_path is not None
                     else np.zeros(sample.instances.shape, np.uint8))
            viewer.show(image, instances_svg(sample.instances))
            scores = sample.instances.scores
            info.text = (f"{sample.name}: {len(sample.instances)} instances, {sample.instances.n_overlapping} "
                         f"overlapping" + (f", mean score {float(np.mean(scores)):.3f}" if scores is not None
                                           and len(scores) else ""))

        @guarded
        def download(fmt: str) -> None:
            sample = next((s for s in state["samples"] if s.name == image_select.value), None)
            if sample is None or state["dir"] is None:
                ui.notify("open a prediction folder and pick an image", type="warning")
                return
            folder = state["dir"]
            if fmt == "labels":
                ui.download.content((folder / "labels" / f"{sample.name}.tif").read_bytes(), f"{sample.name}.tif")
            elif fmt == "coco":
                written = folder / "predictions.json"  # what `cellbench predict` wrote, scores included
                if written.is_file():
                    data = written.read_bytes()
                else:
                    data = json.dumps(to_coco(state["samples"], state["samples"][0].instances.classes,
                                              info={"cellbench": {"predictions": ws.relative(folder)}})).encode()
                ui.download.content(data, f"{folder.name}.json", "application/json")
            elif fmt == "roi":
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / f"{sample.name}.zip"
                    write_roi_zip(path, sample.instances)
                    ui.download.content(path.read_bytes(), path.name, "application/zip")
            else:
                data = json.dumps(to_geojson(sample.instances, object_type="detection", extra={"image": sample.name}))
                ui.download.content(data, f"{sample.name}.geojson", "application/geo+json")

        refresh.on_click(on_refresh)
        open_button.on_click(on_open)
        image_select.on_value_change(on_image)
