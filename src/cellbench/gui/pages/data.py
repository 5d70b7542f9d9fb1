"""Data: open a dataset of any layout in the workspace (or upload images and masks), look at it.

The dataset is read by :func:`cellbench.data.read_dataset`, as ``cellbench data info``
reads it, confined to the workspace (:meth:`Workspace.read_dataset`: a mask or annotation
file linked to a file outside, or an image a COCO json names outside, is refused before it
is read); the summary is :meth:`Dataset.summary`. The viewer draws the ground truth as one
outline per instance (overlapping instances keep both outlines) in its class colour. Uploads
decode in a worker thread, within a cap on their decoded size (:mod:`cellbench.gui.uploads`).
"""

from __future__ import annotations

from pathlib import Path

from nicegui import events, ui

from cellbench.data import LAYOUTS
from cellbench.gui.pages.common import Viewer, frame, guarded, in_thread
from cellbench.gui.render import class_color, instances_svg
from cellbench.gui.uploads import UPLOADS, store_upload
from cellbench.gui.workspace import safe_name

__all__ = ["guess_layout", "register"]


def guess_layout(path: Path) -> str:
    """The layout a path most likely has (the user can change it).

    >>> guess_layout(Path("x/annotations.json"))
    'coco'
    """
    if path.suffix.lower() == ".json":
        return "coco"
    if path.suffix.lower() == ".npz":
        return "tissuenet"
    if (path / "spec").is_dir() or (path / "dataset" / "spec").is_dir():
        return "glioma-c6"
    if (path / "labels").is_dir():
        return "neurips"
    if (path / "masks").is_dir() or any((c / "masks").is_dir() for c in path.iterdir() if c.is_dir()):
        return "dsb"
    return "cellpose"


def register(ctx) -> None:
    ws = ctx.workspace

    @ui.page("/data")
    def data_page() -> None:
        frame("Data")
        state: dict = {"dataset": None}
        with ui.row().classes("items-end"):
            path = ui.select(ws.dataset_candidates(), label="dataset (path in the workspace)", with_input=True,
                             new_value_mode="add-unique").classes("w-96").props('data-testid="data-path"')
            layout = ui.select(list(LAYOUTS), label="layout", value="dsb").classes("w-40") \
                .props('data-testid="data-layout"')
            split = ui.input("split (optional)").classes("w-32").props('data-testid="data-split"')
            task = ui.input("task", value="all").classes("w-32")
            open_button = ui.button("Open").props('data-testid="data-open"')
        summary = ui.label("").props('data-testid="data-summary"')
        legend = ui.row()
        columns = [{"name": k, "label": k, "field": k, "align": "left"}
                   for k in ("image", "split", "instances", "per class", "overlapping")]
        table = ui.table(columns=columns, rows=[], row_key="index", selection="single",
                         pagination=10).classes("w-full").props('data-testid="data-images"')
        viewer = Viewer(ctx, testid="data-viewer")

        def on_path(e) -> None:
            if e.value:
                try:
                    layout.value = guess_layout(ws.resolve(e.value))
                except Exception:
                    pass

        path.on_value_change(on_path)

        @guarded
        async def open_dataset() -> None:
            if not path.value:
                ui.notify("choose a dataset path first", type="warning")
                return
            chosen_split = safe_name(split.value, "split") if split.value else None  # a split is a sub-folder
            ds = await in_thread(ws.read_dataset, path.value, layout.value, split=chosen_split,
                                 task=safe_name(task.value or "all", "task"))
            state["dataset"] = ds
            s = ds.summary()
            per_class = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
            summary.text = (f"{s['n_images']} images, {s['n_instances']} instances ({per_class}); "
                            f"{s['n_overlapping_instances']} overlapping")
            legend.clear()
            with legend:
                for k, name in enumerate(ds.classes):
                    ui.label(name).style(f"color: {class_color(k)}; font-weight: bold")
            table.rows = [{"index": k, "image": smp.name, "split": smp.split or "",
                           "instances": len(smp.instances),
                           "per class": ", ".join(f"{c} {n}" for c, n in smp.instances.class_counts().items() if n),
                           "overlapping": smp.instances.n_overlapping}
                          for k, smp in enumerate(ds.samples)]
            table.update()
            if ds.samples:
                table.selected = [table.rows[0]]
                await show(0)

        async def show(index: int) -> None:
            smp = state["dataset"].samples[index]
            image = await in_thread(smp.load_image)
            viewer.show(image, instances_svg(smp.instances))

        @guarded
        async def on_select(e) -> None:
            if table.selected:
                await show(int(table.selected[0]["index"]))

        open_button.on_click(open_dataset)
        table.on_select(on_select)

        with ui.expansion("Upload images and masks", icon="upload").classes("w-full"):
            ui.label(f"Files go to {UPLOADS}/<set>/images and masks/ (masks: label images of the same names); "
                     f"at most {ctx.max_upload_bytes // 2**20} MB each, decoding to at most "
                     f"{ctx.max_decoded_bytes // 2**20} MB of pixels; they must decode as images. Open the set "
                     f"with layout 'folder'.")
            set_name = ui.input("set name", value="upload").props('data-testid="upload-set"')

            def make_handler(kind: str):
                @guarded
                async def handler(e: events.UploadEventArguments) -> None:
                    data = await e.file.read()
                    saved = await store_upload(ws, set_name.value, kind, e.file.name, data,
                                               max_bytes=ctx.max_upload_bytes, max_decoded_bytes=ctx.max_decoded_bytes)
                    ui.notify(f"saved {ws.relative(saved)}")
                    path.options = ws.dataset_candidates()
                    path.update()
                return handler

            with ui.row():
                ui.upload(label="images", multiple=True, auto_upload=True, max_file_size=ctx.max_upload_bytes,
                          on_upload=make_handler("images")).props('data-testid="upload-images"')
                ui.upload(label="masks", multiple=True, auto_upload=True, max_file_size=ctx.max_upload_bytes,
                          on_upload=make_handler("masks")).props('data-testid="upload-masks"')
