"""The report's table of metrics: what each reported number is, its paper's name, and how it matches instances.

Read from the registration (:data:`cellbench.metrics.METRICS`) and from the
record every evaluation keeps (``settings["metrics"]``: each family's title
and matching convention, so a metric of one's own is described too).
Evaluations stored before that record name their families by the values they
hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cellbench.metrics import METRICS
from cellbench.report.results import EntryEvaluation
from cellbench.report.tables import Table

__all__ = ["metric_families", "metrics_table"]

_REGISTERED = {m.name: m for m in METRICS}


def metric_families(result: Mapping) -> dict[str, dict]:
    """``{name: {"title", "convention"}}`` of the metric families of one stored evaluation (``Evaluation.to_dict()``).

    >>> sorted(metric_families({"image_mean": {"0.5": {"f1": 0.5, "dice": 0.7}}}))
    ['dice', 'matching']
    """
    recorded = (result.get("settings") or {}).get("metrics")
    if isinstance(recorded, Mapping):
        return {name: dict(info) for name, info in recorded.items()}
    held = {key for row in (result.get("image_mean") or {}).values() for key in row}
    return {m.name: {"title": m.title, "convention": m.convention} for m in METRICS
            if m.name in result or held & set(m.averaged)}


def _aggregation(name: str) -> str:
    m = _REGISTERED.get(name)
    if m is None:
        return "as its metric defines"
    if not m.averaged:
        return "over the whole set of images"
    where = "beside every IoU threshold, " if not m.per_threshold else "at each IoU threshold, "
    return where + ("pooled (parts summed over images) and " if m.pooled else "") + "mean over images"


def metrics_table(evaluations: Sequence[EntryEvaluation]) -> Table | None:
    """One row per metric family the run's evaluations hold: values, paper name, matching, aggregation."""
    seen: dict[str, tuple[dict, int]] = {}
    for ev in evaluations:
        for name, info in metric_families(ev.evaluation.result).items():
            first, n = seen.get(name, (info, 0))
            seen[name] = (first, n + 1)
    if not seen:
        return None
    rows = []
    for name, (info, n) in seen.items():
        m = _REGISTERED.get(name)
        rows.append((name, ", ".join(m.averaged) if m is not None and m.averaged else name, info.get("title", ""),
                     info.get("convention", ""), _aggregation(name), n))
    return Table(
        key="metrics",
        title="Metrics: what each number is and how instances are matched",
        columns=("Metric", "Values", "Paper name", "Matching convention", "Aggregation", "Evaluations"),
        rows=tuple(rows),
        caption="Conventions differ between metrics that share a name in the literature: pq counts a pair at "
                "IoU >= t (the optimal one-to-one matching of StarDist, Cellpose and the NeurIPS-2022 "
                "challenge), pq_canonical at IoU > 0.5 (Kirillov et al., HoVer-Net); COCO matches greedily by "
                "score; AJI lets a prediction serve several ground-truth cells, AJI+ does not. Each evaluation "
                "records the conventions it was scored with.",
    )
