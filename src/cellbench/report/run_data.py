"""The data behind a run's evaluations, read back for the analysis sections: ground truth and cached predictions.

A stored evaluation names its dataset (path, layout, options in the grid
entry's config), split, ground-truth kind (overlapping, or flattened with a
policy) and boundary rule. :func:`ground_truth` rebuilds exactly the ground
truth it was scored against; :func:`predictions` reads the grid entry's
cached predictions (``cache/<entry key>/pred/<split>/<image>.json``) with the
same boundary rule applied, so an analysis sees what the scores saw. Both
are read once per report: they are kept in the results' memo
(:meth:`~cellbench.report.results.RunResults.memoised`), which the sections
share.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cellbench.data import Dataset, read_dataset
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.metrics import drop_boundary
from cellbench.report.results import EntryEvaluation, RunResults
from cellbench.runner import PredictionCache

__all__ = ["ContextData", "entry_dataset", "ground_truth", "predictions", "shape_memo", "train_cells"]


@dataclass(frozen=True)
class ContextData:
    """The test images of one evaluation context: names, a way to load pixels, the ground truth as scored."""

    names: tuple[str, ...]
    samples: tuple  # cellbench.data.Sample, for load_image()
    gt: tuple[InstanceSet, ...]


def ground_truth(results: RunResults, ev: EntryEvaluation, *, limit: int | None = None) -> ContextData:
    """The ground truth ``ev`` was scored against (kind, flatten policy and boundary rule applied).

    The first ``limit`` test images (all with None); read once per setting for the life of ``results``.
    """
    entry, evaluation = ev.entry, ev.evaluation
    key = ("ground truth", json.dumps(entry.config["dataset"], sort_keys=True, default=str), entry.task,
           evaluation.split, evaluation.ground_truth, evaluation.flatten_policy, evaluation.boundary_px)
    whole = results.memo.get((*key, None))
    if whole is not None:  # every image is read already: the first ``limit`` are the same
        return whole if limit is None else ContextData(whole.names[:limit], whole.samples[:limit], whole.gt[:limit])
    return results.memoised((*key, limit), lambda: _read_ground_truth(ev, limit))


def entry_dataset(ev: EntryEvaluation, split: str | None = None) -> Dataset:
    """The test split of ``ev`` (or ``split``) as the grid entry read it: a registered dataset by its name, with
    its own layouts; any other by path and layout; the entry's data options either way."""
    entry = ev.entry
    d = entry.config["dataset"]
    layout = None if d.get("registered") else d["layout"]
    split = ev.evaluation.split if split is None else split
    return read_dataset(d["path"], layout, split=split, task=entry.task, **d.get("options", {}))


def _read_ground_truth(ev: EntryEvaluation, limit: int | None) -> ContextData:
    evaluation = ev.evaluation
    dataset = entry_dataset(ev)
    samples = dataset.samples[:limit] if limit is not None else dataset.samples
    gts = [s.instances for s in samples]
    if evaluation.ground_truth == "flattened":
        policy = policy_from_name(evaluation.flatten_policy)
        gts = [flatten(g, policy).to_instance_set() for g in gts]
    gts = [drop_boundary(g, evaluation.boundary_px) for g in gts]
    return ContextData(tuple(s.name for s in samples), tuple(samples), tuple(gts))


def predictions(
    results: RunResults, ev: EntryEvaluation, names: Sequence[str], *, boundary_rule: bool = True
) -> dict[str, InstanceSet]:
    """The cached predictions of ``ev``'s grid entry for ``names``; missing ones left out.

    With the evaluation's boundary rule applied, as scored; as cached with ``boundary_rule=False``. Each file
    is read once for the life of ``results``.
    """
    cache = PredictionCache(results.run_dir / "cache", ev.entry.key)
    split, px = ev.evaluation.split, ev.evaluation.boundary_px if boundary_rule else 0
    out = {}
    for name in names:
        cached = results.memoised(("prediction", ev.entry.key, split, name),
                                  lambda: cache.load_prediction(split, name))
        if cached is not None:
            out[name] = results.memoised(("prediction", ev.entry.key, split, name, px),
                                         lambda: drop_boundary(cached[0], px))
    return out


def shape_memo(results: RunResults) -> dict:
    """The memo of shape measures (:func:`cellbench.analysis.measure_masks`) for the life of ``results``.

    The morphology section and the regression's covariates measure the same ground truth; they share it.
    """
    return results.memoised("shape measures", dict)


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
