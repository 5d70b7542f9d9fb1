"""Report tables for tasks with several classes: per-class scores and the class confusion of matched pairs.

Both come from evaluations run with ``per_class: true`` (see
:mod:`cellbench.metrics.classes` for the two rules). Methods that classify
(one model for all classes) and single-class methods (one model per class,
predictions merged by the runner) are rows of the same tables, so they read
side by side; the ``Models`` column says which is which.
"""

from __future__ import annotations

from collections.abc import Sequence

from cellbench.report.results import EntryEvaluation, threshold_key
from cellbench.report.tables import Table

__all__ = ["class_tables"]

_IOU = 0.5


def _models(ev: EntryEvaluation) -> str:
    history = (ev.entry.training.history if ev.entry.training else None) or {}
    if "per_class" in history:
        return "one per class"
    return "one" if ev.entry.training else "untrained"


def _pct(v) -> float | None:
    return None if v is None else 100.0 * float(v)


def class_tables(evaluations: Sequence[EntryEvaluation]) -> list[Table]:
    """The per-class table and the confusion table at IoU 0.5 (none when nothing was scored per class)."""
    key = threshold_key(_IOU)
    scored = [ev for ev in evaluations if "per_class" in ev.evaluation.result]
    if not scored:
        return []
    rows, confusion = [], []
    for ev in scored:
        e, result = ev.entry, ev.evaluation.result
        where = (e.dataset, e.task, ev.evaluation.split or "all", ev.evaluation.ground_truth, e.model, _models(ev))
        table = (result.get("class_confusion") or {}).get(key) or {}
        accuracy = table.get("class_accuracy")
        for cname, figures in result["per_class"].items():
            pooled = (figures.get("pooled") or {}).get(key) or {}
            rows.append((*where, cname, *(_pct(pooled.get(m)) for m in ("precision", "recall", "f1", "ap_dsb")),
                         _pct(accuracy)))
        for gt_class, row in (table.get("matched") or {}).items():
            for pred_class, n in row.items():
                confusion.append((*where[:5], gt_class, pred_class, n))
            confusion.append((*where[:5], gt_class, "(missed)", table["missed"][gt_class]))
        for pred_class, n in (table.get("spurious") or {}).items():
            confusion.append((*where[:5], "(no GT)", pred_class, n))
    return [
        Table(
            key="classes_per_class", title="Per-class scores (one model per class vs one model for all classes)",
            columns=("Dataset", "Task", "Split", "GT", "Model", "Models", "Class", "Prec.", "Rec.", "F1", "AP@50",
                     "Class acc."),
            rows=tuple(rows), decimals=2,
            caption=("At IoU 0.5, in %, pooled over images. Each class is matched on its own, as COCO scores "
                     "each category: a cell found with the wrong class is a false positive of the predicted "
                     "class and a false negative of its true class. 'macro' is the mean over classes. Class acc.: "
                     "of the pairs matched ignoring class, the share whose classes agree (n/a for a model "
                     "that names no GT class)."),
        ),
        Table(
            key="classes_confusion", title="Class confusion of matched pairs (IoU 0.5)",
            columns=("Dataset", "Task", "Split", "GT", "Model", "GT class", "Predicted class", "Pairs"),
            rows=tuple(confusion), decimals=0,
            caption=("GT and predictions matched ignoring class (optimal one-to-one, IoU >= 0.5), then each "
                     "matched pair counted by GT class and predicted class; (missed): GT left unmatched; "
                     "(no GT): predictions left unmatched. Rows of a model add up to its GT and prediction counts."),
        ),
    ]
