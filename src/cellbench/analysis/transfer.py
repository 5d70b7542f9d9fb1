"""Modality transfer (the 18-methods paper, Fig. 5b-c): nuclei grown into cells, cells shrunk into nuclei.

Segment one modality, then approximate the other by a morphological operation
and score it against the other modality's ground truth, for a range of ``k``:

* **dilate** (nuclei -> whole cells): every instance grows by up to ``k``
  pixels and stops where it meets a neighbour, as 10x Xenium's nucleus
  expansion and the paper ("the dilation stopped for a cell when its boundary
  reached the boundaries of other neighboring cells"):
  :func:`skimage.segmentation.expand_labels` on the label image (Euclidean
  distance; a background pixel within ``k`` px goes to its nearest
  instance). Overlapping source instances are first flattened with cellbench's
  default policy.
* **erode** (whole cells -> nuclei): every instance is eroded on its own by
  ``k`` iterations of :func:`scipy.ndimage.binary_erosion` (the paper's
  function; its default cross-shaped element, so ``k`` is a city-block
  distance; the image edge counts as background). An instance eroded away is
  dropped.

``k = 0`` is the source itself. Scores: pooled ap_dsb (TP / (TP + FP + FN))
at each IoU threshold, pooled F1 at 0.5, and COCO mAP, AP50 and AP75 (the
paper's measure) with each instance's score taken from its source instance, 1
when it has none (ground truth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import FlatLabels, InstanceSet, flatten
from cellbench.metrics import GLIOMA_THRESHOLDS, evaluate, threshold_key

__all__ = [
    "DEFAULT_KS",
    "TransferPoint",
    "TransferSweep",
    "dilate_instances",
    "erode_instances",
    "transfer_figure",
    "transfer_rows",
    "transfer_sweep",
]

Operation = Literal["dilate", "erode"]
#: The default sweep: 0 (no change) to 10 pixels.
DEFAULT_KS = tuple(range(11))


def dilate_instances(instances: InstanceSet, k: int) -> InstanceSet:
    """Every instance grown by up to ``k`` px, stopping at its neighbours (``expand_labels``).

    >>> s = InstanceSet.from_label_image(np.array([[1, 0, 0, 0, 0, 2]]))
    >>> [i.area for i in dilate_instances(s, 2)]
    [3, 3]
    """
    if k < 0:
        raise DataError(f"dilation needs k >= 0 pixels, got {k}")
    if k == 0 or not len(instances):
        return instances
    from skimage.segmentation import expand_labels

    flat = flatten(instances)
    grown = FlatLabels(expand_labels(flat.labels, distance=k), flat.policy, flat.params, flat.lost, instances)
    return grown.to_instance_set()


def erode_instances(instances: InstanceSet, k: int) -> InstanceSet:
    """Every instance eroded on its own by ``k`` iterations of ``binary_erosion``; vanished ones dropped.

    >>> s = InstanceSet.from_label_image(np.pad(np.ones((5, 5), np.uint8), 1))
    >>> [i.area for i in erode_instances(s, 1)], len(erode_instances(s, 3))
    ([9], 0)
    """
    if k < 0:
        raise DataError(f"erosion needs k >= 0 pixels, got {k}")
    if k == 0:
        return instances
    from scipy import ndimage

    kept = []
    for inst in instances:
        mask = ndimage.binary_erosion(inst.mask, iterations=k, border_value=0)
        if not mask.any():
            continue
        rows, cols = np.nonzero(mask)
        y0, x0 = int(rows.min()), int(cols.min())
        crop = mask[y0 : rows.max() + 1, x0 : cols.max() + 1]
        top, left = inst.bbox[0] + y0, inst.bbox[1] + x0
        kept.append(inst.replace(mask=crop, bbox=(top, left, top + crop.shape[0], left + crop.shape[1])))
    return instances.replace(instances=tuple(kept))


@dataclass(frozen=True)
class TransferPoint:
    """Scores of the source transformed by ``k`` px against the target ground truth."""

    k: int
    n_images: int
    n_pred: int
    n_gt: int
    pooled: dict  # threshold key -> {"ap_dsb", "f1", "precision", "recall"}
    coco_map: float | None
    coco_ap50: float | None
    coco_ap75: float | None


@dataclass(frozen=True)
class TransferSweep:
    """One sweep: which operation, from what to what, and a point per ``k``."""

    operation: str
    source: str
    target: str
    thresholds: tuple[float, ...]
    points: tuple[TransferPoint, ...]
    method: str

    def best(self, key: str = "coco_map") -> TransferPoint | None:
        """The point with the highest ``coco_map`` (or ``ap_dsb@t``); ties go to the smaller k."""
        def score(p: TransferPoint) -> float:
            v = getattr(p, key) if not key.startswith("ap_dsb@") else p.pooled[key.split("@")[1]]["ap_dsb"]
            return -np.inf if v is None else v

        return max(self.points, key=score, default=None)

    def to_dict(self) -> dict:
        return asdict(self)


def _scored(instances: InstanceSet) -> InstanceSet:
    if all(i.score is not None for i in instances):
        return instances
    return instances.replace(instances=tuple(i if i.score is not None else i.replace(score=1.0) for i in instances))


def transfer_sweep(
    sources: Sequence[InstanceSet],
    targets: Sequence[InstanceSet],
    *,
    operation: Operation,
    ks: Sequence[int] = DEFAULT_KS,
    thresholds: Sequence[float] = GLIOMA_THRESHOLDS,
    names: Sequence[str] | None = None,
    source_label: str = "source",
    target_label: str = "target",
    coco: bool = True,
    progress: Callable | None = None,
) -> TransferSweep:
    """Transform every source image by each ``k`` and score it against the paired target ground truth.

    >>> gt = [InstanceSet.from_label_image(np.pad(np.ones((5, 5), np.uint8), 2))]
    >>> nuc = [InstanceSet.from_label_image(np.pad(np.ones((1, 1), np.uint8), 4))]
    >>> s = transfer_sweep(nuc, gt, operation="dilate", ks=[0, 2], coco=False)
    >>> [p.pooled["0.5"]["ap_dsb"] for p in s.points]
    [0.0, 1.0]
    """
    if operation not in ("dilate", "erode"):
        raise DataError(f"operation must be dilate or erode, got {operation!r}")
    if len(sources) != len(targets):
        raise DataError(f"{len(sources)} source images but {len(targets)} target images")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 0:
        raise DataError(f"k must be >= 0 pixels, got {list(ks)}")
    op = dilate_instances if operation == "dilate" else erode_instances
    thresholds = tuple(float(t) for t in thresholds)
    points = []
    for k in progress(ks, desc=f"{operation} sweep", unit="k") if progress else ks:
        moved = [_scored(op(s, k)) for s in sources]
        res = evaluate(list(targets), moved, names=names, thresholds=thresholds, coco=coco).to_dict()
        pooled = {threshold_key(t): {m: res["pooled"][threshold_key(t)][m] for m in ("ap_dsb", "f1", "precision",
                                                                                      "recall")}
                  for t in thresholds}
        c = res.get("coco") or {}
        points.append(TransferPoint(k, len(moved), sum(len(m) for m in moved), sum(len(t) for t in targets), pooled,
                                    c.get("map"), c.get("ap50"), c.get("ap75")))
    how = ("skimage.segmentation.expand_labels (grow up to k px, Euclidean, stop at neighbours)"
           if operation == "dilate" else
           "scipy.ndimage.binary_erosion per instance, k iterations of the cross element; vanished instances dropped")
    method = (f"{source_label} {operation}d by k px ({how}), scored against {target_label}: pooled ap_dsb = "
              f"TP / (TP + FP + FN) at IoU {', '.join(map(str, thresholds))} (optimal one-to-one matching, "
              f"IoU >= t)" + ("; COCO mAP@[.50:.05:.95] with each instance scored by its source (1 when none)"
                               if coco else ""))
    return TransferSweep(operation, source_label, target_label, thresholds, tuple(points), method)


def transfer_rows(sweeps: Sequence[TransferSweep]) -> list[dict]:
    """One tidy dict per sweep and ``k``."""
    rows = []
    for s in sweeps:
        for p in s.points:
            row = {"operation": s.operation, "source": s.source, "target": s.target, "k": p.k,
                   "n_images": p.n_images, "n_pred": p.n_pred, "n_gt": p.n_gt}
            for tk, m in p.pooled.items():
                row[f"ap_dsb@{tk}"] = m["ap_dsb"]
            first = next(iter(p.pooled.values()), {})
            row["f1@" + next(iter(p.pooled), "")] = first.get("f1")
            row.update({"coco_map": p.coco_map, "coco_ap50": p.coco_ap50, "coco_ap75": p.coco_ap75})
            rows.append(row)
    return rows


def transfer_figure(sweeps: Sequence[TransferSweep], path: str | Path, *, title: str = "") -> Path:
    """One panel per sweep: ap_dsb at each threshold and COCO mAP against ``k``."""
    from cellbench.figures import new_figure, save_figure

    if not sweeps:
        raise DataError("no transfer sweep to draw")
    fig = new_figure(4.6 * len(sweeps), 3.6)
    axes = fig.subplots(1, len(sweeps), squeeze=False)[0]
    for ax, s in zip(axes, sweeps):
        ks = [p.k for p in s.points]
        for tk in (threshold_key(t) for t in s.thresholds):
            ax.plot(ks, [p.pooled[tk]["ap_dsb"] or 0.0 for p in s.points], marker="o", ms=3,
                    label=f"AP@{tk} (TP/(TP+FP+FN))")
        if any(p.coco_map is not None for p in s.points):
            ax.plot(ks, [p.coco_map if p.coco_map is not None else np.nan for p in s.points], marker="s", ms=3,
                    color="black", label="COCO mAP")
        ax.set_xlabel(f"{s.operation} k (px)")
        ax.set_ylabel("score (pooled over images)")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{s.source} {s.operation}d -> scored vs {s.target}", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)
