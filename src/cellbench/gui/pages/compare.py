"""Compare: a ``cellbench run`` folder's tables and figures, and one image with GT and two methods side by side.

Tables are :func:`cellbench.report.build_tables` (the report's own); figures are the
PNGs of the run's ``cellbench report`` folder (built on request by
:func:`cellbench.report.write_report`). The side-by-side view reads the ground truth
as the report does and the predictions from the run's cache; each prediction is
coloured by cellbench's matching at IoU 0.5: green matched, red false positive, and
the ground truth it missed (false negatives) in yellow.
"""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from cellbench.errors import DataError
from cellbench.gui.pages.common import Viewer, frame, guarded, in_thread
from cellbench.gui.render import ERROR_COLORS, error_kinds, instances_svg
from cellbench.instances import flatten, policy_from_name

__all__ = ["register", "side_by_side"]


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(rgb)


def _ground_truth(ws, ev):
    """The evaluation's ground truth samples (flattened when it was scored flattened); inside the workspace only."""
    entry, evaluation = ev.entry, ev.evaluation
    d = entry.config["dataset"]
    path = Path(d["path"]).resolve()
    if not path.is_relative_to(ws.root):
        raise DataError("the run's dataset lies outside the workspace; the GUI reads nothing outside it", path=path)
    ds = ws.read_dataset(path, d["layout"], split=evaluation.split, task=entry.task, **d.get("options", {}))
    samples = list(ds.samples)
    if evaluation.ground_truth == "flattened":
        policy = policy_from_name(evaluation.flatten_policy)
        samples = [(s, flatten(s.instances, policy).to_instance_set()) for s in samples]
    else:
        samples = [(s, s.instances) for s in samples]
    return samples


def side_by_side(ws, results, ev_a, ev_b, image: str) -> dict:
    """Image, GT and the two predictions of ``image`` with their error kinds (what the page draws)."""
    from cellbench.runner import PredictionCache

    samples = _ground_truth(ws, ev_a)
    sample, gt = next(((s, g) for s, g in samples if s.name == image), (None, None))
    if sample is None:
        raise DataError(f"image {image!r} is not in the dataset", path=image)
    panels = []
    for ev in (ev_a, ev_b):
        cached = PredictionCache(results.run_dir / "cache", ev.entry.key).load_prediction(ev.evaluation.split, image)
        if cached is None:
            raise DataError(f"no cached prediction of {image!r} for {ev.entry.model}", path=results.run_dir / "cache")
        pred = cached[0]
        gt_kind, pred_kind = error_kinds(gt, pred, threshold=0.5)
        panels.append({"model": ev.entry.model, "pred": pred, "gt_kind": gt_kind, "pred_kind": pred_kind})
    return {"image": sample.load_image(), "gt": gt, "panels": panels}


def register(ctx) -> None:
    ws = ctx.workspace

    @ui.page("/compare")
    def compare_page() -> None:
        from cellbench.report import load_results
        from cellbench.report.build import build_tables

        frame("Compare")
        state: dict = {"results": None, "contexts": {}}
        with ui.row().classes("items-end"):
            run = ui.select(ws.run_dirs(), label="run folder", with_input=True).classes("w-96") \
                .props('data-testid="cmp-run"')
            open_button = ui.button("Open").props('data-testid="cmp-open"')
            build = ui.button("Build report figures").props('data-testid="cmp-build"')
        title = ui.label("").props('data-testid="cmp-title"')
        tables_box = ui.column().classes("w-full")
        figures_box = ui.row().classes("w-full")
        ui.label("One image, ground truth and two methods").classes("text-xl")
        with ui.row().classes("items-end"):
            context = ui.select([], label="setting").classes("w-[40rem]").props('data-testid="cmp-context"')
            image = ui.select([], label="image").classes("w-56").props('data-testid="cmp-image"')
            method_a = ui.select([], label="method A").classes("w-64").props('data-testid="cmp-method-a"')
            method_b = ui.select([], label="method B").classes("w-64").props('data-testid="cmp-method-b"')
            show = ui.button("Show").props('data-testid="cmp-show"')
        ui.html("FP / FN map at IoU 0.5: " + ", ".join(
            f'<span style="color:{_hex(ERROR_COLORS[k])};font-weight:bold">{label}</span>'
            for k, label in (("tp", "matched"), ("fp", "false positive"), ("fn", "missed GT (false negative)"))))
        with ui.row().classes("w-full no-wrap"):
            panels = []
            for label in ("ground truth", "A", "B"):
                with ui.column().classes("w-1/3"):
                    caption = ui.label(label).props(f'data-testid="cmp-caption-{label[0].lower()}"')
                    panels.append((caption, Viewer(ctx, testid=f"cmp-{label[0].lower()}", max_height="50vh")))

        def figures_folder(run_dir: Path) -> Path | None:
            for candidate in (run_dir / "report" / "figures", run_dir.parent / "report" / "figures"):
                if candidate.is_dir() and candidate.resolve().is_relative_to(ws.root):
                    return candidate
            return None

        def show_figures(run_dir: Path) -> None:
            figures_box.clear()
            folder = figures_folder(run_dir)
            with figures_box:
                if folder is None:
                    ui.label("no report figures yet: Build report figures writes them (cellbench report)")
                    return
                for png in sorted(folder.glob("*.png")):
                    ui.image(f"/files/{ws.relative(png)}").classes("w-[32rem]").props(
                        f'data-testid="cmp-figure" alt="{png.name}"')

        @guarded
        async def on_open() -> None:
            if not run.value:
                return
            run_dir = ws.resolve(run.value)
            results = await in_thread(load_results, run_dir)
            sections = await in_thread(build_tables, results)
            state["results"] = results
            title.text = f"run {results.name}: {len(results.entries)} grid entries, {len(results.evaluations)} evaluations"
            tables_box.clear()
            with tables_box:
                for name, tables in sections.items():
                    with ui.expansion(name, value=name.startswith(("Glioma", "Performance summary"))).classes("w-full"):
                        for t in tables:
                            ui.label(t.title).classes("font-bold")
                            cols = [{"name": str(k), "label": c, "field": str(k), "align": "left"}
                                    for k, c in enumerate(t.columns)]
                            rows = [{str(k): v for k, v in enumerate(r)} for r in t.formatted()]
                            ui.table(columns=cols, rows=rows).classes("w-full").props('dense data-testid="cmp-table"')
                            ui.label(t.caption).classes("text-xs")
            show_figures(run_dir)
            groups: dict[str, list] = {}
            for ev in results.evaluations:
                groups.setdefault(ev.setting(), []).append(ev)
            state["contexts"] = groups
            context.options = list(groups)
            context.value = context.options[0] if groups else None
            context.update()

        def on_context(e) -> None:
            evs = state["contexts"].get(e.value, [])
            labels = [ev.entry.model for ev in evs]
            method_a.options, method_b.options = labels, labels
            method_a.value = labels[0] if labels else None
            method_b.value = labels[1] if len(labels) > 1 else method_a.value
            names = [img["image"] for img in (evs[0].evaluation.result.get("per_image", ()) if evs else ())]
            image.options = names
            image.value = names[0] if names else None
            for w in (method_a, method_b, image):
                w.update()

        @guarded
        async def on_show() -> None:
            evs = {ev.entry.model: ev for ev in state["contexts"].get(context.value, [])}
            if method_a.value not in evs or method_b.value not in evs or not image.value:
                ui.notify("open a run and choose a setting, an image and two methods", type="warning")
                return
            view = await in_thread(side_by_side, ws, state["results"], evs[method_a.value], evs[method_b.value],
                                   image.value)
            gt = view["gt"]
            panels[0][0].text = f"ground truth: {len(gt)} instances"
            panels[0][1].show(view["image"], instances_svg(gt))
            for (caption, viewer), panel in zip(panels[1:], view["panels"]):
                kinds = panel["pred_kind"]
                missed = [k for k, kind in enumerate(panel["gt_kind"]) if kind == "fn"]
                caption.text = (f"{panel['model']}: {kinds.count('tp')} matched, {kinds.count('fp')} false positive, "
                                f"{len(missed)} missed")
                svg = instances_svg(panel["pred"], colors=[_hex(ERROR_COLORS[k]) for k in kinds], ids="pred")
                svg += instances_svg(gt.replace(instances=tuple(gt[k] for k in missed)),
                                     colors=[_hex(ERROR_COLORS["fn"])] * len(missed), ids="fn")
                viewer.show(view["image"], svg)

        @guarded
        async def on_build() -> None:
            from cellbench.report import write_report

            if not run.value:
                return
            run_dir = ws.resolve(run.value)
            ui.notify("building the report (cellbench report)...")
            await in_thread(write_report, run_dir, run_dir / "report", overwrite=True)
            show_figures(run_dir)

        open_button.on_click(on_open)
        context.on_value_change(on_context)
        show.on_click(on_show)
        build.on_click(on_build)
