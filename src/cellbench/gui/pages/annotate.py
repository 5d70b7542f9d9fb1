"""Annotate: click a cell (or drag a box around it), SAM proposes its mask, accept or redo; save as COCO.

The proposal comes from :class:`~cellbench.gui.sam_prompt.PromptSegmenter` (LiteMedSAM by
default, the backbone CellSeg1 trains); the set is written by
:func:`~cellbench.gui.annotation_sets.save_annotations` in the ``coco`` layout that
``cellbench train`` reads.
"""

from __future__ import annotations

from nicegui import ui

from cellbench.data.images import IMAGE_SUFFIXES, read_image
from cellbench.gui.annotation_sets import load_annotations, save_annotations
from cellbench.gui.pages.common import Viewer, frame, guarded, in_thread
from cellbench.gui.render import class_color, instances_svg
from cellbench.gui.sam_prompt import prompt_box
from cellbench.instances import InstanceSet

__all__ = ["register"]


def register(ctx) -> None:
    ws = ctx.workspace

    @ui.page("/annotate")
    def annotate_page() -> None:
        frame("Annotate")
        state: dict = {"image": None, "path": None, "accepted": [], "proposal": None, "down": None, "busy": False}
        files = [p for p in ws.image_sources() if p.lower().endswith(IMAGE_SUFFIXES)]
        with ui.row().classes("items-end"):
            image_select = ui.select(files, label="image (path in the workspace)", with_input=True) \
                .classes("w-96").props('data-testid="ann-image"')
            load_button = ui.button("Load").props('data-testid="ann-load"')
            half = ui.number("click box half side (px)", value=12, min=2, max=512).classes("w-48") \
                .props('data-testid="ann-half"')
            cls = ui.select(["cell"], label="class", value="cell", with_input=True, new_value_mode="add-unique") \
                .classes("w-40").props('data-testid="ann-class"')
        ui.label(f"Click a cell or drag a box around it; SAM ({ctx.segmenter.backbone_name}) proposes its mask "
                 "(dashed). Accept keeps it, Redo drops it.").classes("text-sm")
        with ui.row():
            accept = ui.button("Accept", color="positive").props('data-testid="ann-accept"')
            redo = ui.button("Redo", color="warning").props('data-testid="ann-redo"')
            status = ui.label("").props('data-testid="ann-status"')
        with ui.row().classes("w-full no-wrap"):
            with ui.column().classes("grow"):
                viewer = Viewer(ctx, on_mouse=lambda e: on_mouse(e), events=("mousedown", "mouseup"),
                                testid="ann-viewer")
            with ui.column().classes("w-80"):
                count = ui.label("0 cells").props('data-testid="ann-count"')
                listing = ui.column()
                set_name = ui.input("annotation set", value="my-set").props('data-testid="ann-set"')
                save = ui.button("Save as COCO", icon="save").props('data-testid="ann-save"')
                saved = ui.label("").props('data-testid="ann-saved"')

        def redraw() -> None:
            accepted = state["accepted"]
            names = list(dict.fromkeys([n for _, n in accepted] + list(cls.options)))
            svg = ""
            if state["image"] is not None:
                shape = state["image"].shape[:2]
                svg = instances_svg(InstanceSet(shape, tuple(i.replace(class_id=names.index(n)) for i, n in accepted),
                                                tuple(names)), ids="ann")
                if state["proposal"] is not None:
                    p = state["proposal"]
                    svg += instances_svg(InstanceSet(shape, (p,)), colors=["#ff00ff"], width=2.5, ids="proposal") \
                        .replace("<path ", '<path stroke-dasharray="4 3" ')
            viewer.overlay(svg)
            count.text = f"{len(accepted)} cells"
            listing.clear()
            with listing:
                for k, (inst, name) in enumerate(accepted):
                    with ui.row().classes("items-center"):
                        ui.label(f"#{k + 1}").style(f"color: {class_color(names.index(name))}")
                        ui.label(f"{inst.area} px")
                        ui.select(names, value=name, on_change=lambda e, k=k: change_class(k, e.value)) \
                            .classes("w-28").props(f'dense data-testid="ann-class-{k}"')
                        ui.button(icon="delete", on_click=lambda k=k: delete(k)).props(
                            f'flat dense data-testid="ann-delete-{k}"')

        def change_class(k: int, name: str) -> None:
            inst, _ = state["accepted"][k]
            state["accepted"][k] = (inst, name)
            redraw()

        def delete(k: int) -> None:
            del state["accepted"][k]
            redraw()

        @guarded
        async def load() -> None:
            if not image_select.value:
                ui.notify("choose an image", type="warning")
                return
            path = ws.resolve(image_select.value)
            image = await in_thread(read_image, path)
            state.update(image=image, path=path, proposal=None,
                         accepted=await in_thread(load_annotations, ws, set_name.value, path.name))
            for _, name in state["accepted"]:
                if name not in cls.options:
                    cls.options.append(name)
            cls.update()
            viewer.show(image)
            redraw()

        @guarded
        async def on_mouse(e) -> None:
            if state["image"] is None:
                return
            if e.type == "mousedown":
                state["down"] = (e.image_x, e.image_y)
                return
            if e.type != "mouseup" or state["down"] is None or state["busy"]:
                return
            (x0, y0), state["down"] = state["down"], None
            box = prompt_box(x0, y0, e.image_x, e.image_y, half_side=float(half.value or 12))
            state["busy"] = True
            status.text = "SAM is thinking..."
            try:
                proposal = await in_thread(ctx.segmenter.segment, state["image"], box)
            finally:
                state["busy"] = False
            state["proposal"] = proposal
            status.text = "proposal ready" if proposal is not None else "SAM found nothing there"
            redraw()

        def on_accept() -> None:
            if state["proposal"] is None:
                ui.notify("no proposal: click a cell first", type="warning")
                return
            state["accepted"].append((state["proposal"], cls.value or "cell"))
            state["proposal"] = None
            status.text = "accepted"
            redraw()

        def on_redo() -> None:
            state["proposal"] = None
            status.text = "click again"
            redraw()

        @guarded
        async def on_save() -> None:
            if state["image"] is None:
                return
            path = await in_thread(save_annotations, ws, set_name.value, state["path"], state["image"].shape[:2],
                                   list(state["accepted"]))
            saved.text = f"saved {len(state['accepted'])} cells to {ws.relative(path)}"

        load_button.on_click(load)
        accept.on_click(on_accept)
        redo.on_click(on_redo)
        save.on_click(on_save)
