"""The data behind a run's evaluations, read back for the analysis sections: ground truth and cached predictions.

A stored evaluation names its dataset (path, layout, options in the grid
entry's config), split, ground-truth kind (overlapping, or flattened with a
policy) and boundary rule. :func:`ground_truth` rebuilds exactly the ground
truth it was scored against; :func:`predictions` reads the grid entry's
cached predictions (``cache/<entry key>/pred/<split>/<image>.json``) with the
same boundary rule applied, so an analysis sees what the scores saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cellbench.data import read_dataset
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.metrics import drop_boundary
from cellbench.report.results import EntryEvaluation, RunResults
from cellbench.runner import PredictionCache

__all__ = ["ContextData", "ground_truth", "predictions", "train_cells"]


@dataclass(frozen=True)
class ContextData:
    """The test images of one evaluation context: names, a way to load pixels, the ground truth as scored."""

    names: tuple[str, ...]
    samples: tuple  # cellbench.data.Sample, for load_image()
    gt: tuple[InstanceSet, ...]


def ground_truth(ev: EntryEvaluation, *, limit: int | None = None) -> ContextData:
    """The ground truth ``ev`` was scored against (kind, flatten policy and boundary rule applied)."""
    entry, evaluation = ev.entry, ev.evaluation
    d = entry.config["dataset"]
    dataset = read_dataset(d["path"], d["layout"], split=evaluation.split, task=entry.task, **d.get("options", {}))
    samples = dataset.samples[:limit] if limit is not None else dataset.samples
    gts = [s.instances for s in samples]
    if evaluation.ground_truth == "flattened":
        policy = policy_from_name(evaluation.flatten_policy)
        gts = [flatten(g, policy).to_instance_set() for g in gts]
    gts = [drop_boundary(g, evaluation.boundary_px) for g in gts]
    return ContextData(tuple(s.name for s in samples), tuple(samples), tuple(gts))


def predictions(results: RunResults, ev: EntryEvaluation, names: tuple[str, ...]) -> dict[str, InstanceSet]:
    """The cached predictions of ``ev``'s grid entry for ``names`` (boundary rule applied); missing ones left out."""
    cache = PredictionCache(results.run_dir / "cache", ev.entry.key)
    out = {}
    for name in names:
        cached = cache.load_prediction(ev.evaluation.split, name)
        if cached is not None:
            out[name] = drop_boundary(cached[0], ev.evaluation.boundary_px)
    return out


def train_cells(results: RunResults, ev: EntryEvaluation) -> int | None:
    """Annotated instances in the images the grid entry trained on (0 when it did not train), from its model.json."""
    training = ev.entry.training
    if training is None or not training.n_images:
        return 0
    path = PredictionCache(results.run_dir / "cache", ev.entry.key).model_dir / "model.json"
    try:
        n = json.loads(Path(path).read_text())["train"]["n_instances"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(n)
