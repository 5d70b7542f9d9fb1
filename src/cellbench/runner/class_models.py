"""Tasks with several classes: one model for methods that classify, one model per class for the others.

A method whose class sets ``supports_classes = True`` (Mask R-CNN) trains ONE
model on a task with several classes (Glioma C6 ``types``: cell type A and
B) and predicts classified instances. Every other method learns one kind of
object, so on such a task the runner trains it once per class, on that
class's instances alone (what the Glioma C6 paper did for Cellpose,
MediarFormer and CellSeg1: a type A model and a type B model), and merges the
models' predictions into one classified prediction: model k's instances get
class k. Both kinds of method are then scored the same way, per class and
with a class confusion table (:mod:`cellbench.metrics.classes`), side by side.

Which methods need one model per class, and the per-class training itself, live with the one
training path (:mod:`cellbench.methods.training`), which ``cellbench train --per-class`` uses too;
this module merges the per-class models' predictions and their training records.
"""

from __future__ import annotations

from collections.abc import Sequence

from cellbench.instances import InstanceSet
from cellbench.methods.training import needs_class_models, only_class  # the rule and the filter training uses

__all__ = ["merge_class_predictions", "needs_class_models", "only_class", "training_record"]


def merge_class_predictions(parts: Sequence[InstanceSet], classes: Sequence[str]) -> InstanceSet:
    """One prediction of ``classes`` from one single-class prediction per class (part k -> class k).

    Instances keep their masks and scores; instances of different parts may overlap.

    >>> import numpy as np
    >>> a = InstanceSet.from_label_image(np.array([[1, 0]]))
    >>> b = InstanceSet.from_label_image(np.array([[1, 1]]))
    >>> merged = merge_class_predictions([a, b], ("A", "B"))
    >>> merged.classes, merged.class_ids.tolist()
    (('A', 'B'), [0, 1])
    """
    if len(parts) != len(classes):
        raise ValueError(f"{len(parts)} predictions for {len(classes)} classes")
    shapes = {tuple(p.shape) for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"per-class predictions of different shapes {sorted(shapes)}")
    instances = tuple(inst.replace(class_id=k) for k, part in enumerate(parts) for inst in part)
    return InstanceSet(shape=parts[0].shape, instances=instances, classes=tuple(classes))


def training_record(per_class: dict[str, dict]) -> dict:
    """The runner's training record of several per-class models: times added, histories kept per class."""
    first = next(iter(per_class.values()))
    return {
        "history": {"epochs": [], "info": {"models": "one per class", "classes": list(per_class)},
                    "per_class": {name: t["history"] for name, t in per_class.items()}},
        "wall_s": sum(t["wall_s"] for t in per_class.values()),
        "images": first["images"],
        "valid_images": first["valid_images"],
        "resumed_from_cache": all(t["resumed_from_cache"] for t in per_class.values()),
    }
