"""The report's opening: a leaderboard of F1@0.5 across seeds, and every method's scores across seeds beside the
bootstrap interval across images.

Both tables read :func:`cellbench.analysis.aggregate_seeds` records made from
a run's evaluations by :func:`seed_aggregates`: the grid entries that differ
only in the seed are one method (label and regime) in one setting, summarised
by n, mean and sample sd (ddof 1) of each pooled metric. The interval across
images is that of the lowest seed's evaluation (see :mod:`cellbench.analysis.seeds`
for why one seed's, not an average over seeds).

* :func:`leaderboard_table`: rows = dataset (and task / split / boundary rule
  where they vary), columns = method (regime), cells ``mean ± sd`` of pooled
  F1@0.5 against the **overlapping** ground truth; the best mean of each row in
  bold. The CSV holds one row per cell in plain numbers.
* :func:`seed_table`: every method and setting (flattened ground truth too):
  F1@0.5, F1@0.75, ap_dsb@0.5 (and COCO mAP when computed) as ``mean ± sd``
  across seeds, beside F1@0.5 of one seed with its bootstrap interval over images.
"""

from __future__ import annotations

from collections.abc import Sequence

from cellbench.analysis import SeedAggregate, SeedSpread, aggregate_seeds, mean_sd_text
from cellbench.report.certainty_tables import _bootstrap_words
from cellbench.report.results import EntryEvaluation, threshold_key
from cellbench.report.tables import ShownTable, _get

__all__ = ["LEADERBOARD_SECTION", "REPORT_SEED_METRICS", "SEEDS_SECTION", "leaderboard_table", "score_rows",
           "seed_aggregates", "seed_table"]

LEADERBOARD_SECTION = "Leaderboard: F1@0.5 across seeds"
SEEDS_SECTION = "Across seeds and across images"
#: The metrics summarised across seeds, with the report's column names (AP = ap_dsb = TP / (TP + FP + FN)).
REPORT_SEED_METRICS: dict[str, str] = {"f1@0.5": "F1@50", "f1@0.75": "F1@75", "ap_dsb@0.5": "AP@50",
                                       "coco_map": "COCO mAP"}
_TIE = 1e-12  # means this close to the best of a row are all bold


def score_rows(evaluations: Sequence[EntryEvaluation]) -> list[dict]:
    """One score row per evaluation, as :func:`cellbench.analysis.aggregate_seeds` reads them (with ``per_image``)."""
    rows = []
    for ev in evaluations:
        e, r = ev.entry, ev.evaluation
        pooled = r.result.get("pooled") or {}
        rows.append({
            "dataset": e.dataset, "task": e.task, "method": e.method, "regime": e.regime, "split": r.split,
            "ground_truth": r.ground_truth, "flatten_policy": r.flatten_policy, "boundary_px": r.boundary_px,
            "seed": e.seed,
            "f1@0.5": _get(pooled, threshold_key(0.5), "f1"), "f1@0.75": _get(pooled, threshold_key(0.75), "f1"),
            "ap_dsb@0.5": _get(pooled, threshold_key(0.5), "ap_dsb"), "coco_map": _get(r.result, "coco", "map"),
            "per_image": r.result.get("per_image"),
        })
    return rows


def seed_aggregates(
    evaluations: Sequence[EntryEvaluation], *, intervals: bool = True, n_boot: int = 1000, level: float = 0.95,
    seed: int = 0,
) -> tuple[SeedAggregate, ...]:
    """The run's evaluations summarised across seeds; with ``intervals``, the first seed's F1@0.5 bootstrap
    interval over images (``n_boot`` resamples, ``level``, numpy seed ``seed``)."""
    return aggregate_seeds(score_rows(evaluations), metrics=tuple(REPORT_SEED_METRICS),
                           interval_metric="f1" if intervals else None, interval_threshold=0.5, n_boot=n_boot,
                           level=level, boot_seed=seed)


def _boundary(px: int | None) -> str:
    return f"{px} px frame" if px else "off"


def _seeds_words(aggs: Sequence[SeedAggregate], spreads: Sequence[SeedSpread]) -> str:
    seeds = sorted({s for a in aggs for s in a.seeds})
    ns = sorted({s.n_seeds for s in spreads})
    listed = ", ".join(map(str, seeds))
    if len(ns) == 1:
        return f"seeds {listed} (n = {ns[0]} in every cell)"
    return f"seeds {listed}; the cells differ in their number of seeds, written (n ...) after each"


def leaderboard_table(aggregates: Sequence[SeedAggregate], *, threshold: float = 0.5) -> ShownTable | None:
    """Pooled F1 at ``threshold`` against the overlapping ground truth: mean ± sd across seeds, dataset x method.

    ``None`` when no aggregate has that F1 against overlapping ground truth.
    """
    metric = f"f1@{threshold_key(threshold)}"
    aggs = [a for a in aggregates if a.ground_truth == "overlap" and a.spread(metric).n_seeds]
    if not aggs:
        return None
    row_keys = list(dict.fromkeys((a.dataset, a.task, a.split, a.boundary_px) for a in aggs))
    models = list(dict.fromkeys((a.method, a.regime) for a in aggs))
    cells = {((a.dataset, a.task, a.split, a.boundary_px), (a.method, a.regime)): a for a in aggs}
    spreads = [a.spread(metric) for a in aggs]
    uniform = len({s.n_seeds for s in spreads}) == 1
    labels = (("Dataset", str), ("Task", str), ("Split", lambda s: s or "all"), ("Boundary rule", _boundary))
    varying = [k for k, _ in enumerate(labels) if k == 0 or len({key[k] for key in row_keys}) > 1]
    fixed = [f"{labels[k][0].lower()} {labels[k][1](row_keys[0][k])}" for k in range(1, 4) if k not in varying]

    rows, shown, bold = [], [], set()
    for r, key in enumerate(row_keys):
        here = {m: cells[key, m].spread(metric) for m in models if (key, m) in cells}
        best = max(s.mean for s in here.values())
        texts = []
        for c, m in enumerate(models):
            s = here.get(m)
            if s is None:
                texts.append("")
                continue
            is_best = s.mean >= best - _TIE
            if is_best:
                bold.add((r, len(varying) + c))
            texts.append(s.text() + ("" if uniform else f" (n {s.n_seeds})"))
            rows.append((key[0], key[1], key[2] or "all", key[3], m[0], m[1], " ".join(map(str, s.seeds)),
                         s.n_seeds, s.mean, s.sd, "yes" if is_best else ""))
        shown.append((*(labels[k][1](key[k]) for k in varying), *texts))
    t = round(100 * threshold)
    return ShownTable(
        key=f"leaderboard_f1_iou{threshold}",
        title=f"F1@{t} against the overlapping ground truth: mean ± sd across seeds",
        columns=("Dataset", "Task", "Split", "Boundary px", "Method", "Regime", "Seeds", "n seeds", f"F1@{t} mean",
                 f"F1@{t} sd", "Best in row"),
        rows=tuple(rows),
        caption=f"F1 at IoU {threshold} pooled over images (TP, FP, FN summed), against the overlapping ground "
                f"truth, fractions; each cell: mean ± sample sd (ddof 1, divided by n - 1) across training "
                f"{_seeds_words(aggs, spreads)}; – : one seed, sd undefined; empty: not run. Bold: the highest mean "
                f"of the row (ties all bold), not a significance test. The spread is across retrained models on the "
                f"same images; the interval across images is in the next section. "
                + (f"All rows: {', '.join(fixed)}. " if fixed else "")
                + "The CSV has one row per cell: mean and sd as numbers, Best in row = yes for the bold ones.",
        shown_columns=(*(labels[k][0] for k in varying), *(f"{m} ({g})" for m, g in models)),
        shown_rows=tuple(shown),
        bold=frozenset(bold),
    )


def _interval_text(a: SeedAggregate) -> str:
    iv = a.interval
    if iv is None or iv.estimate is None:
        return "n/a"
    bounds = "n/a" if iv.low is None else f"[{iv.low:.3f}, {iv.high:.3f}]"
    return f"{iv.estimate:.3f} {bounds}, seed {a.interval_seed}"


def seed_table(aggregates: Sequence[SeedAggregate]) -> ShownTable | None:
    """Each method and setting: the headline metrics across seeds beside one seed's F1@50 interval across images."""
    if not aggregates:
        return None
    made = next((a.interval for a in aggregates if a.interval is not None), None)
    metrics = [m for m in REPORT_SEED_METRICS if any(a.spread(m).n_seeds for a in aggregates)]
    rows, shown = [], []
    for a in aggregates:
        spreads = [a.spread(m) for m in metrics]
        iv = a.interval
        rows.append((a.dataset, a.task, a.split or "all", a.ground_truth, a.flatten_policy, a.boundary_px, a.method,
                     a.regime, " ".join(map(str, a.seeds)), a.n_seeds,
                     *(v for s in spreads for v in (s.mean, s.sd, s.n_seeds)),
                     a.interval_seed, iv and iv.estimate, iv and iv.low, iv and iv.high, iv and iv.n_images))
        gt = "overlap" if a.ground_truth == "overlap" else f"{a.ground_truth} ({a.flatten_policy})"
        shown.append((a.dataset, a.task, a.split or "all", gt, a.model, ", ".join(map(str, a.seeds)),
                      *(s.text() for s in spreads), _interval_text(a)))
    names = [REPORT_SEED_METRICS[m] for m in metrics]
    boundaries = sorted({a.boundary_px or 0 for a in aggregates})
    pct = "no" if made is None else f"{100 * made.level:g} %"
    how = ("bootstrap interval over images (none computed)" if made is None
           else _bootstrap_words(made.n_boot, made.level, made.seed))
    return ShownTable(
        key="seeds_and_images",
        title=f"Across seeds (mean ± sd) and across images ({pct} bootstrap interval of one seed)",
        columns=("Dataset", "Task", "Split", "Ground truth", "Flatten policy", "Boundary px", "Method", "Regime",
                 "Seeds", "n seeds", *(f"{n} {x}" for n in names for x in ("mean", "sd", "n")), "Interval seed",
                 "F1@50 of that seed", "F1@50 low", "F1@50 high", "Images"),
        rows=tuple(rows),
        caption="One row per method (regime) and setting. Across seeds: mean ± sample sd (ddof 1, divided by n - 1) "
                "of each seed's pooled score (TP, FP, FN summed over images); – : one seed, sd undefined. "
                "F1@50 / F1@75: F1 at IoU 0.5 / 0.75; AP@50: ap_dsb = TP / (TP + FP + FN) at IoU 0.5, not COCO AP"
                + ("; COCO mAP: pycocotools, averaged over IoU .50:.05:.95" if "coco_map" in metrics else "")
                + f"; fractions. Across images: pooled F1@50 of the lowest seed's model (seed named in the cell) "
                f"with its {how}; it reflects which images were drawn, not "
                f"retraining, and is neither averaged nor pooled over seeds. Boundary rule: "
                + ", ".join(_boundary(b) for b in boundaries) + ".",
        shown_columns=("Dataset", "Task", "Split", "Ground truth", "Model", "Seeds",
                       *(f"{n} across seeds" for n in names), f"F1@50 of one seed [{pct} interval across images]"),
        shown_rows=tuple(shown),
    )
