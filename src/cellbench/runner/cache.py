"""Cached predictions and trained models of a run, written atomically.

Layout under the run folder::

    cache/<entry key>/model/           a model directory (model.json + weights/), as
                                       `cellbench train` writes: `cellbench predict` takes it
    cache/<entry key>/pred/<split>/<image>.json   instances as COCO RLE, + predict seconds

Every file is written to a temporary sibling and renamed, every model folder
is staged and renamed (:func:`~cellbench.methods.model_dir.save_model`): a
process killed at any moment leaves either the whole file or none of it, so a
resumed run can trust whatever it finds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cellbench.files import atomic_write_bytes
from cellbench.instances import InstanceSet, instance_to_rle, rle_to_instance
from cellbench.methods.model_dir import MODEL_FILE

__all__ = ["PredictionCache", "instances_from_json", "instances_to_json"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def instances_to_json(instances: InstanceSet) -> dict:
    """An InstanceSet as plain JSON (RLE masks), lossless for masks, classes and scores.

    >>> import numpy as np
    >>> s = InstanceSet.from_label_image(np.array([[0, 1], [2, 2]]))
    >>> back = instances_from_json(instances_to_json(s))
    >>> [i.bbox for i in back] == [i.bbox for i in s]
    True
    """
    return {
        "shape": list(instances.shape),
        "classes": list(instances.classes),
        "instances": [
            {"rle": instance_to_rle(i, instances.shape), "class_id": i.class_id, "score": i.score}
            for i in instances
        ],
    }


def instances_from_json(d: dict) -> InstanceSet:
    instances = tuple(
        rle_to_instance(i["rle"], class_id=i["class_id"], score=i["score"]) for i in d["instances"]
    )
    return InstanceSet(shape=tuple(d["shape"]), instances=instances, classes=tuple(d["classes"]))


class PredictionCache:
    """Files of one grid entry: its trained model and its predictions per split and image."""

    def __init__(self, root: str | Path, entry_key: str) -> None:
        self.folder = Path(root) / entry_key

    @property
    def model_dir(self) -> Path:
        """The grid entry's trained model, a model directory (:mod:`cellbench.methods.model_dir`)."""
        return self.folder / "model"

    def has_model(self) -> bool:
        return (self.model_dir / MODEL_FILE).is_file()

    def _pred_path(self, split: str | None, image: str) -> Path:
        return self.folder / "pred" / _SAFE.sub("_", split or "all") / f"{_SAFE.sub('_', image)}.json"

    def load_prediction(self, split: str | None, image: str) -> tuple[InstanceSet, float] | None:
        """The cached instances of ``image`` and the seconds predicting it took, or None."""
        path = self._pred_path(split, image)
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        return instances_from_json(d["instances"]), float(d["predict_s"])

    def save_prediction(self, split: str | None, image: str, instances: InstanceSet, predict_s: float) -> None:
        payload = {"image": image, "split": split, "predict_s": predict_s, "instances": instances_to_json(instances)}
        atomic_write_bytes(self._pred_path(split, image), json.dumps(payload).encode())
