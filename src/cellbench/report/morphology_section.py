"""The report's morphology (ground truth vs predictions) and annotation-agreement sections.

* Morphology: for each dataset / task / split (overlapping ground truth when
  scored), every instance of the ground truth and of each model's cached
  predictions is measured (:mod:`cellbench.analysis.morphology`); a table of
  per-source summaries and the distribution and Glioma Fig. 2c scatter
  figures, one column per source.
* Agreement: a run holds one annotation set per dataset, so agreement comes
  from ``cellbench agreement --json`` files placed in the run folder
  (``agreement*.json``); each becomes a table. Without one the section is left
  out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellbench.analysis import MorphologyRecord, measure_instances, morphology_figures
from cellbench.report.paper_sections import preferred_evaluations
from cellbench.report.results import EntryEvaluation, RunResults
from cellbench.report.run_data import ground_truth, predictions, shape_memo
from cellbench.report.tables import Table, _slug

__all__ = ["SUMMARY_MEASURES", "agreement_tables", "morphology_section"]

log = logging.getLogger(__name__)

#: At most this many models are drawn beside the ground truth (the table lists every one).
MAX_FIGURE_MODELS = 3
#: The measures summarised in the report's morphology table.
SUMMARY_MEASURES = ("area", "eccentricity", "solidity", "elongation")


def _summary_rows(records: Sequence[MorphologyRecord]) -> list[tuple]:
    rows = []
    for source in dict.fromkeys(r.source for r in records):
        mine = [r for r in records if r.source == source]
        for cls in dict.fromkeys(r.class_name for r in mine):
            sub = [r for r in mine if r.class_name == cls]
            cells = []
            for m in SUMMARY_MEASURES:
                v = np.array([getattr(r.shape, m) for r in sub if getattr(r.shape, m) is not None], float)
                cells += [float(np.mean(v)) if v.size else None, float(np.median(v)) if v.size else None]
            rows.append((source, cls, len(sub), *cells))
    return rows


def morphology_section(
    results: RunResults, figures_dir: Path, *, max_images: int | None = 20
) -> tuple[list[Table], list[tuple[str, Path]]]:
    """Tables and figures comparing the shapes of ground truth and predictions, per dataset / task / split.

    At most ``max_images`` test images are measured per context (all with None).
    """
    tables, figures = [], []
    contexts: dict[tuple, list[EntryEvaluation]] = {}
    for ev in preferred_evaluations(results):
        contexts.setdefault(ev.context, []).append(ev)
    for k, (context, evs) in enumerate(contexts.items()):
        setting = evs[0].setting()
        try:
            data = ground_truth(results, evs[0], limit=max_images)
        except Exception as exc:  # the data may be gone; the report still stands
            log.warning("no morphology for %s: %s", setting, exc)
            continue
        memo = shape_memo(results)
        records = [r for name, gt in zip(data.names, data.gt) for r in measure_instances(gt, image=name, memo=memo)]
        seen_models = set()
        for ev in evs:
            model = (ev.entry.method, ev.entry.regime)
            if model in seen_models:  # one draw (the first seed) per method and regime
                continue
            seen_models.add(model)
            preds = predictions(results, ev, data.names)
            records += [r for name, p in preds.items()
                        for r in measure_instances(p, image=name, source=ev.entry.model, memo=memo)]
        if not records:
            continue
        drawn = list(dict.fromkeys(r.source for r in records))[: 1 + MAX_FIGURE_MODELS]
        limit = f"the first {len(data.names)} test image(s)" if max_images else f"all {len(data.names)} test images"
        cols = [c for m in SUMMARY_MEASURES for c in (f"Mean {m}", f"Median {m}")]
        tables.append(Table(
            key=_slug("morphology", *context[:4]),
            title="Morphology of ground truth and predictions",
            columns=("Source", "Class", "Instances", *cols),
            rows=tuple(_summary_rows(records)),
            caption=f"{setting}; {limit}; predictions of the first seed of each method and regime; every instance "
                    f"measured whole on its own mask (overlaps kept): area in pixels; eccentricity and solidity as "
                    f"scikit-image regionprops; elongation = eb / ea of the boundary points' covariance (18-methods "
                    f"paper; 1 round, smaller elongated). Predictions after the boundary rule, as scored.",
        ))
        label = f"{context[0]} / {context[1]} / split {context[2] or 'all'}"
        paths = morphology_figures([r for r in records if r.source in drawn], figures_dir / f"morphology_{k}",
                                   label=label)
        shown = "" if len(drawn) == len({r.source for r in records}) else f" (the first {MAX_FIGURE_MODELS} models)"
        figures += [(f"Morphology distributions per class, ground truth beside each model{shown} — {setting}",
                     paths[0]),
                    (f"Solidity against eccentricity (Glioma C6 Fig. 2c), size by area — {setting}", paths[1])]
    return tables, figures


def agreement_tables(run_dir: str | Path) -> list[Table]:
    """One table per ``agreement*.json`` (``cellbench agreement --json``) in the run folder."""
    tables = []
    for k, path in enumerate(sorted(Path(run_dir).glob("agreement*.json"))):
        try:
            d = json.loads(path.read_text())
            keys = [str(t) for t in d["iou_thresholds"]]
            pairs = [*d["pairs"], *d["vs_consensus"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping %s: not a `cellbench agreement` file (%s)", path, exc)
            continue
        keys = [next((x for x in pairs[0]["by_iou"] if float(x) == float(t)), t) for t in keys] if pairs else keys
        rows = tuple((p["reference"], p["other"], p.get("kind", "annotation"),
                      *((p["by_iou"].get(t) or {}).get("ap_dsb") for t in keys)) for p in pairs)
        tables.append(Table(
            key=_slug("agreement", path.stem, str(k)),
            title=f"Annotation agreement ({path.name})",
            columns=("Reference", "Other", "Kind", *(f"AP@{round(100 * float(t))}" for t in keys)),
            rows=rows,
            caption=f"From {path.name} (cellbench agreement): AP = TP / (TP + FP + FN) pooled over "
                    f"{len(d.get('images', []))} image(s); the reference is scored as ground truth. Consensus: "
                    f"{d.get('consensus_rule', 'n/a')}",
        ))
    return tables
