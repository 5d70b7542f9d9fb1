"""Report tables: pure functions from evaluation and grid entry records to :class:`Table`.

Every table carries a caption with the setting that produced its numbers
(aggregation, IoU thresholds, boundary rule, ground truth kind and flatten
policy, dataset, task, split): a number is never shown without it.

* :func:`glioma_tables`: the Glioma C6 paper layout (Table 2 against overlapping
  ground truth, Table 4 against flattened): precision, recall, F1 at IoU 0.5
  and "AP" (``ap_dsb`` = TP / (TP + FP + FN)) at 0.5 / 0.75 / 0.9, in %,
  **pooled** over images (TP, FP, FN summed). The paper's numbers satisfy
  AP50 = F1 / (2 - F1) (Cellpose: 83.57 -> 71.78), which holds for pooled counts.
* :func:`summary_tables`, :func:`threshold_tables`, :func:`top_bottom_tables`,
  :func:`count_bin_tables`, :func:`training_table`: the NeurIPS-2022 report
  (per-image mean / median / sample std).
* :func:`coco_table`, :func:`timing_table`, :func:`failure_table`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from cellbench.metrics import COUNT_BINS, GLIOMA_THRESHOLDS, NEURIPS_THRESHOLDS  # COUNT_BINS re-exported
from cellbench.report.results import EntryEvaluation, threshold_key
from cellbench.runner import EntryRecord

__all__ = [
    "COUNT_BINS",
    "ShownTable",
    "Table",
    "coco_table",
    "count_bin_tables",
    "failure_table",
    "glioma_tables",
    "standardised_time",
    "summary_tables",
    "threshold_tables",
    "timing_table",
    "top_bottom_tables",
    "training_table",
]


_POOLED = "pooled over images (TP, FP, FN summed, then precision / recall / F1 / AP)"
_IMAGE_MEAN = "per image, then mean / median / sample std (ddof 1, divided by n - 1) over images"


@dataclass(frozen=True)
class Table:
    """A titled table with the caption that says how its numbers were made.

    ``rows`` hold raw values; ``decimals`` is how the report shows floats.
    """

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    caption: str
    decimals: int = 4

    def to_csv(self) -> str:
        """The table as CSV (floats to 6 decimals), the caption as a leading ``#`` comment line."""
        buf = io.StringIO()
        buf.write(f"# {self.title}. {self.caption}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for row in self.rows:
            w.writerow(["" if v is None else round(v, 6) if isinstance(v, float) else v for v in row])
        return buf.getvalue()

    def formatted(self) -> list[list[str]]:
        """Rows as the report shows them.

        >>> Table("t", "T", ("a", "b"), (("x", 0.123456), ("y", None)), "c", decimals=2).formatted()
        [['x', '0.12'], ['y', 'n/a']]
        """
        return [[_fmt(v, self.decimals) for v in row] for row in self.rows]

    def header(self) -> tuple[str, ...]:
        """Column names as the report shows them (those of :meth:`formatted`)."""
        return self.columns

    def bold_cells(self) -> frozenset[tuple[int, int]]:
        """(row, column) positions in :meth:`formatted` that the report sets in bold: none here."""
        return frozenset()

    def to_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "columns": list(self.columns),
                "rows": [list(r) for r in self.rows], "caption": self.caption}


@dataclass(frozen=True)
class ShownTable(Table):
    """A table the report shows in another shape than its CSV: plain numbers in ``rows`` (CSV, JSON), text in
    ``shown_rows`` under ``shown_columns`` (HTML), with the ``bold`` (row, column) cells of ``shown_rows``.

    >>> t = ShownTable("t", "T", ("model", "f1"), (("a", 0.6), ("b", 0.5)), "c", shown_columns=("", "a", "b"),
    ...                shown_rows=(("dsb", "0.600 ± 0.100", "0.500 ± –"),), bold=frozenset({(0, 1)}))
    >>> t.to_csv().splitlines()[1:], t.formatted(), sorted(t.bold_cells())
    (['model,f1', 'a,0.6', 'b,0.5'], [['dsb', '0.600 ± 0.100', '0.500 ± –']], [(0, 1)])
    """

    shown_columns: tuple[str, ...] = ()
    shown_rows: tuple[tuple[str, ...], ...] = ()
    bold: frozenset[tuple[int, int]] = frozenset()

    def header(self) -> tuple[str, ...]:
        return self.shown_columns

    def formatted(self) -> list[list[str]]:
        return [list(r) for r in self.shown_rows]

    def bold_cells(self) -> frozenset[tuple[int, int]]:
        return self.bold

    def to_dict(self) -> dict:
        return super().to_dict() | {"shown_columns": list(self.shown_columns),
                                    "shown_rows": [list(r) for r in self.shown_rows],
                                    "bold": sorted([list(c) for c in self.bold])}


def _fmt(v, decimals: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{decimals}f}"
    return str(v)


def _get(d: dict | None, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _pct(v) -> float | None:
    return None if v is None else 100.0 * float(v)


def _slug(*parts) -> str:
    text = "-".join(str(p) for p in parts if p not in (None, ""))
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _groups(evaluations: Sequence[EntryEvaluation]) -> dict[tuple, list[EntryEvaluation]]:
    groups: dict[tuple, list[EntryEvaluation]] = {}
    for ev in evaluations:
        groups.setdefault(ev.context, []).append(ev)
    return groups


def _subset(ev: EntryEvaluation) -> str:
    """The Glioma paper's subset names for the Glioma layout (spec test, gen); the split otherwise."""
    split = ev.evaluation.split
    if ev.entry.layout == "glioma-c6":
        return {"test": "spec", "valid": "spec valid", "train": "spec train"}.get(split, split or "all")
    return split or "all"


def glioma_tables(evaluations: Sequence[EntryEvaluation]) -> list[Table]:
    """Paper Table 2 (overlapping ground truth) and Table 4 (flattened) layouts, one table each.

    Rows follow the paper: grouped by task and subset, then one row per model.
    """
    tables = []
    for kind, paper in (("overlap", "Table 2"), ("flattened", "Table 4")):
        evs = [e for e in evaluations if e.evaluation.ground_truth == kind]
        if not evs:
            continue
        rows = []
        for ev in evs:
            pooled = ev.evaluation.result.get("pooled", {})
            at = lambda t, m: _pct(_get(pooled, threshold_key(t), m))  # noqa: E731
            rows.append((
                ev.entry.dataset, ev.entry.task, _subset(ev), ev.entry.model,
                "yes" if ev.entry.train_images != 0 else "no",
                at(0.5, "precision"), at(0.5, "recall"), at(0.5, "f1"),
                *(at(t, "ap_dsb") for t in GLIOMA_THRESHOLDS),
            ))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))  # stable: models keep the experiment's order
        policies = sorted({e.evaluation.flatten_policy for e in evs if e.evaluation.flatten_policy})
        boundaries = sorted({e.evaluation.boundary_px for e in evs})
        gt = "overlapping ground truth (the annotations as they are)" if kind == "overlap" else \
            f"ground truth flattened to label images with policy {', '.join(policies)}"
        caption = (
            f"Against {gt}. Precision, recall and F1 at IoU 0.5; AP@t = TP / (TP + FP + FN) at IoU t "
            f"(the paper's AP, not COCO AP); in %; {_POOLED}; boundary rule: "
            + ", ".join(f"{b} px frame" if b else "off" for b in boundaries)
            + ". Glioma-ft: trained on the dataset's training split (regime with training images)."
        )
        tables.append(Table(
            key=f"glioma_{paper.replace(' ', '').lower()}_{kind}",
            title=f"Glioma C6 paper layout ({paper}, {'overlapping' if kind == 'overlap' else 'flattened'} ground truth)",
            columns=("Dataset", "Task", "Subset", "Model", "Glioma-ft", "Prec.", "Rec.", "F1",
                     *(f"AP@{round(100 * t)}" for t in GLIOMA_THRESHOLDS)),
            rows=tuple(rows), caption=caption, decimals=2,
        ))
    return tables


def summary_tables(evaluations: Sequence[EntryEvaluation], *, threshold: float = 0.5) -> list[Table]:
    """NeurIPS report "Performance Summary": mean / median / sample std F1, mean Dice, precision, recall."""
    tables = []
    tk = threshold_key(threshold)
    for context, evs in _groups(evaluations).items():
        rows = []
        for ev in evs:
            m = _get(ev.evaluation.result, "image_mean", tk) or {}
            rows.append((ev.entry.model, m.get("f1"), m.get("f1_median"), m.get("f1_std"), m.get("dice"),
                         m.get("precision"), m.get("recall"), m.get("n_images", ev.evaluation.n_images)))
        tables.append(Table(
            key=_slug("summary", *context[:4], f"iou{threshold}"),
            title=f"Performance summary (IoU threshold {threshold})",
            columns=("Model", "Mean F1", "Median F1", "Std F1", "Mean Dice", "Mean Precision", "Mean Recall",
                     "Images"),
            rows=tuple(rows),
            caption=f"{evs[0].setting()}; {_IMAGE_MEAN}; Dice is pixel Dice of the "
                    f"binary foreground (independent of the threshold).",
        ))
    return tables


def threshold_tables(
    evaluations: Sequence[EntryEvaluation], *, thresholds: Sequence[float] = NEURIPS_THRESHOLDS
) -> list[Table]:
    """NeurIPS report "Performance Across Thresholds", per model."""
    tables = []
    for context, evs in _groups(evaluations).items():
        rows = []
        for ev in evs:
            for t in thresholds:
                m = _get(ev.evaluation.result, "image_mean", threshold_key(t))
                if m is None:
                    continue
                rows.append((ev.entry.model, float(t), m.get("f1"), m.get("dice"), m.get("precision"),
                             m.get("recall"), m.get("n_images", ev.evaluation.n_images)))
        if rows:
            tables.append(Table(
                key=_slug("thresholds", *context[:4]),
                title="Performance across IoU thresholds",
                columns=("Model", "Threshold", "Mean F1", "Mean Dice", "Mean Precision", "Mean Recall",
                         "Total Samples"),
                rows=tuple(rows),
                caption=f"{evs[0].setting()}; {_IMAGE_MEAN}; thresholds evaluated: "
                        f"{', '.join(map(str, evs[0].evaluation.thresholds))}.",
            ))
    return tables


def _image_f1(ev: EntryEvaluation, tk: str) -> list[tuple[str, float | None, float | None, int]]:
    out = []
    for img in ev.evaluation.result.get("per_image", ()):
        out.append((img["image"], _get(img, "by_iou", tk, "f1"), img.get("dice"), img.get("n_gt", 0)))
    return out


def top_bottom_tables(evaluations: Sequence[EntryEvaluation], *, n: int = 5, threshold: float = 0.5) -> list[Table]:
    """Top and bottom ``n`` images by F1 (with Dice), per model; ties broken by image name."""
    tables = []
    tk = threshold_key(threshold)
    for context, evs in _groups(evaluations).items():
        rows = []
        for ev in evs:
            scored = sorted(((name, f1, dice) for name, f1, dice, _ in _image_f1(ev, tk) if f1 is not None),
                            key=lambda r: r[0])
            best = sorted(scored, key=lambda r: -r[1])[:n]
            worst = sorted(scored, key=lambda r: r[1])[:n]
            rows += [(ev.entry.model, "top", k + 1, *r) for k, r in enumerate(best)]
            rows += [(ev.entry.model, "bottom", k + 1, *r) for k, r in enumerate(worst)]
        tables.append(Table(
            key=_slug("top_bottom", *context[:4]),
            title=f"Top {n} and bottom {n} images by F1 (IoU {threshold})",
            columns=("Model", "Which", "Rank", "Image", "F1", "Dice"),
            rows=tuple(rows),
            caption=f"{evs[0].setting()}; F1 of each image at IoU {threshold}; images with neither ground "
                    f"truth nor prediction (F1 undefined) are left out.",
        ))
    return tables


def count_bin_tables(evaluations: Sequence[EntryEvaluation], *, threshold: float = 0.5) -> list[Table]:
    """Mean F1 by GT cell-count bin (6-10, 11-20, 21-50, 51-100, 100+) and the image count per bin."""
    tables = []
    tk = threshold_key(threshold)
    for context, evs in _groups(evaluations).items():
        rows = []
        outside = 0
        for ev in evs:
            images = [(f1, n_gt) for _, f1, _, n_gt in _image_f1(ev, tk) if f1 is not None]
            outside = sum(1 for _, n_gt in images if n_gt < COUNT_BINS[0][1])
            for label, lo, hi in COUNT_BINS:
                f1s = [f1 for f1, n_gt in images if lo <= n_gt <= hi]
                rows.append((ev.entry.model, label, sum(f1s) / len(f1s) if f1s else None, len(f1s)))
        tables.append(Table(
            key=_slug("count_bins", *context[:4]),
            title=f"Mean F1 by ground-truth cell count (IoU {threshold})",
            columns=("Model", "GT Count Range", "mean F1", "count"),
            rows=tuple(rows),
            caption=f"{evs[0].setting()}; mean over the images of each bin of the per-image F1 at IoU {threshold}; "
                    f"cell counts after the boundary rule; {outside} image(s) with fewer than 6 cells are in no bin.",
        ))
    return tables


def standardised_time(wall_s: float | None, batch_size, epochs) -> float | None:
    """SegGal standardised running time for epoch-based training: Ts = T (B / 8) (50 / E).

    >>> standardised_time(100.0, 16, 100)
    100.0
    """
    try:
        b, e = float(batch_size), float(epochs)
    except (TypeError, ValueError):
        return None
    if wall_s is None or e <= 0:
        return None
    return wall_s * (b / 8) * (50 / e)


def _training_info(entry: EntryRecord) -> dict:
    """Batch size, lr, input size, optimizer, epochs from the history's info, else the method config."""
    h = (entry.training.history if entry.training else None) or {}
    info = h.get("info") or {}
    cfg = _get(entry.config, "method", "resolved_config") or _get(entry.config, "method", "config") or {}

    def pick(*names):
        for source in (info, cfg):
            for name in names:
                if source.get(name) is not None:
                    return source[name]
        return None

    epochs = h.get("epochs") or []
    vals = [(e.get("val_score"), e.get("epoch")) for e in epochs if e.get("val_score") is not None]
    best_val = None
    if h.get("best_epoch") is not None:
        best_val = next((v for v, ep in vals if ep == h["best_epoch"]), None)
    if best_val is None and vals:
        best_val = max(v for v, _ in vals)
    n_epochs = pick("epochs", "n_epochs") if not epochs else len(epochs)
    size = pick("input_size", "patch_size", "image_size")
    if isinstance(size, (list, tuple)):
        size = "x".join(map(str, size))
    elif isinstance(size, int):
        size = f"{size}x{size}"
    return {
        "batch_size": pick("batch_size"),
        "lr": pick("lr", "learning_rate"),
        "input_size": size,
        "optimizer": pick("optimizer"),
        "epochs": n_epochs,
        "final_loss": epochs[-1].get("loss") if epochs else None,
        "best_val": best_val,
        "val_metric": h.get("val_metric"),
    }


def training_table(entries: Sequence[EntryRecord]) -> Table | None:
    """NeurIPS report "Training Information" for the grid entries that trained, with SegGal's standardised time."""
    rows = []
    for e in entries:
        t = e.training
        if t is None or t.history is None:
            continue
        i = _training_info(e)
        rows.append((
            e.model, e.dataset, e.task, t.n_images, i["batch_size"], i["lr"], i["input_size"],
            i["optimizer"], i["epochs"], i["final_loss"],
            None if i["best_val"] is None else f"{i['best_val']:.4f} ({i['val_metric'] or 'val'})",
            t.wall_s, standardised_time(t.wall_s, i["batch_size"], i["epochs"]),
        ))
    if not rows:
        return None
    return Table(
        key="training",
        title="Training information",
        columns=("Model", "Dataset", "Task", "Train images", "Batch Size", "Learning Rate", "Input Size",
                 "Optimizer", "Total Epochs", "Final Loss", "Best Val Score", "Train wall s",
                 "Standardised time Ts (s)"),
        rows=tuple(rows),
        caption="From each method's training history and config; n/a where a method does not report it. "
                "Best Val Score is the validation metric at the best epoch (named in brackets). "
                "Ts = T x (B / 8) x (50 / E), the SegGal standardised running time for epoch-based training, "
                "from the measured train wall time T, batch size B and epochs E.",
    )


def coco_table(evaluations: Sequence[EntryEvaluation]) -> Table | None:
    """COCO metrics (pycocotools-equal) where they were computed: mAP@[.50:.05:.95], AP50, AP75, AR50, AR75."""
    rows = []
    for ev in evaluations:
        c = ev.evaluation.result.get("coco") or {}
        note = ev.evaluation.result.get("coco_skipped", "")
        if not c and not note:
            continue
        rows.append((ev.entry.dataset, ev.entry.task, ev.evaluation.split or "all", ev.evaluation.ground_truth,
                     ev.entry.model,
                     c.get("map"), c.get("ap50"), c.get("ap75"), c.get("ar50"), c.get("ar75"), c.get("max_dets"),
                     note))
    if not rows:
        return None
    boundaries = sorted({ev.evaluation.boundary_px for ev in evaluations})
    return Table(
        key="coco",
        title="COCO metrics",
        columns=("Dataset", "Task", "Split", "Ground truth", "Model", "mAP", "AP50", "AP75", "AR50", "AR75",
                 "Max dets", "Note"),
        rows=tuple(rows),
        caption="COCO evaluation over all images of the split (as pycocotools), mAP averaged over IoU "
                ".50:.05:.95; fractions, not %; predictions ranked by their scores; boundary rule: "
                + ", ".join(f"{b} px frame" if b else "off" for b in boundaries) + ".",
    )


def timing_table(evaluations: Sequence[EntryEvaluation]) -> Table:
    """Wall times: training and prediction per grid entry and split."""
    rows = []
    seen = set()
    for entry, ev in ((e.entry, e.evaluation) for e in evaluations):
        if (entry.key, ev.split) in seen:
            continue
        seen.add((entry.key, ev.split))
        per_image = ev.predict_wall_s / ev.n_images if ev.predict_wall_s is not None and ev.n_images else None
        rows.append((entry.model, entry.dataset, entry.task, ev.split or "all",
                     entry.training.wall_s if entry.training else None, ev.n_images, ev.predict_wall_s, per_image))
    return Table(
        key="timings",
        title="Wall times",
        columns=("Model", "Dataset", "Task", "Split", "Train s", "Images", "Predict s", "Predict s / image"),
        rows=tuple(rows),
        caption="Measured wall-clock seconds on the machine of the run (see environment); prediction time "
                "excludes image reading and scoring; a resumed grid entry keeps the times of its first, cached work.",
        decimals=2,
    )


def failure_table(entries: Sequence[EntryRecord]) -> Table | None:
    rows = tuple((e.label, e.error.splitlines()[0] if e.error else "") for e in entries if e.status == "failed")
    if not rows:
        return None
    return Table(key="failures", title="Failed grid entries", columns=("Grid entry", "Error"), rows=rows,
                 caption="Grid entries that raised; their traceback is in the results database (entries.error).")
