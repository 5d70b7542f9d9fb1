"""Error analysis of one method: what it misses, what it invents, what it splits and merges.

Per image, the ground truth and the prediction are matched by the one rule of
:mod:`cellbench.matching` (optimal one-to-one, TP when IoU >= ``threshold``).
From that matching:

* **recall by GT area bin** and **by GT shape bin**: the share of ground-truth
  instances of a bin that are matched; beside it the precision of the
  predictions whose own area (or shape) falls in the bin. Bins are fixed, so
  two runs are binned alike: :data:`AREA_BINS` in pixels (powers of 4, the
  equivalent diameter doubling from bin to bin: ~9, 18, 36, 72 px), and
  :data:`ECCENTRICITY_BINS` of the eccentricity of the instance's second
  moments (as scikit-image ``regionprops``: 0 for a disc, towards 1 for a
  line; the bin edges 0.5 / 0.7 / 0.85 / 0.95 are axis ratios b / a of about
  0.87 / 0.71 / 0.53 / 0.31). Lower bounds are inclusive, upper exclusive (the
  last bin includes 1).
* **splits and merges**, by containment rather than IoU, so they are seen
  whatever the IoU threshold (the "split" and "merge" errors of Caicedo et al.
  2019, Cytometry A, and of the DSB 2018 error analyses, made exact here): a
  prediction *lies in* a GT instance when at least :data:`CONTAINMENT`
  (50 %) of the prediction's own area is inside it, and a GT instance *lies
  in* a prediction when at least 50 % of the GT instance's area is inside it.
  A GT instance is **split** when two or more predictions lie in it; a
  prediction is a **merge** when two or more GT instances lie in it.
  ``n_split_gt`` counts split GT instances and ``n_split_fragments`` the
  predictions lying in them; ``n_merge_pred`` counts merging predictions and
  ``n_merged_gt`` the GT instances lying in them.
* **error maps**: :func:`error_map` paints an RGB image with the true
  positive predictions outlined green, false positive predictions filled red
  and missed (false negative) GT instances filled orange.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.matching import Overlaps, match_pairs, overlaps_from_instances

__all__ = [
    "AREA_BINS",
    "CONTAINMENT",
    "ECCENTRICITY_BINS",
    "ERROR_COLORS",
    "BinRecall",
    "ErrorSummary",
    "ImageErrors",
    "eccentricities",
    "error_map",
    "error_rows",
    "error_summary",
    "image_errors",
    "split_merge",
]

#: GT area bins in pixels: (label, low inclusive, high exclusive).
AREA_BINS: tuple[tuple[str, float, float], ...] = (
    ("<64 px", 0, 64), ("64-255 px", 64, 256), ("256-1023 px", 256, 1024), ("1024-4095 px", 1024, 4096),
    (">=4096 px", 4096, np.inf),
)
#: Eccentricity bins (label, low inclusive, high exclusive; the last includes 1).
ECCENTRICITY_BINS: tuple[tuple[str, float, float], ...] = (
    ("round (e<0.5)", 0.0, 0.5), ("e 0.5-0.7", 0.5, 0.7), ("e 0.7-0.85", 0.7, 0.85), ("e 0.85-0.95", 0.85, 0.95),
    ("elongated (e>=0.95)", 0.95, np.inf),
)
#: Share of an instance's own area that must lie inside the other side's instance for split / merge.
CONTAINMENT = 0.5
#: RGB of the error map: true positive outline, false positive fill, false negative fill.
ERROR_COLORS = {"tp": (0, 200, 0), "fp": (255, 40, 40), "fn": (255, 160, 0)}


def eccentricities(instances: InstanceSet) -> np.ndarray:
    """Eccentricity of each instance from its second central moments (scikit-image's definition).

    ``sqrt(1 - l2 / l1)`` with ``l1 >= l2`` the eigenvalues of the pixel
    coordinates' covariance; 0 for a single pixel.

    >>> s = InstanceSet.from_label_image(np.pad(np.ones((3, 9), np.uint8), 1))
    >>> round(float(eccentricities(s)[0]), 4)
    0.9487
    """
    out = np.zeros(len(instances))
    for k, inst in enumerate(instances):
        rows, cols = np.nonzero(inst.mask)
        if rows.size < 2:
            continue
        r, c = rows - rows.mean(), cols - cols.mean()
        a, b, d = (r * r).mean(), (r * c).mean(), (c * c).mean()
        half_trace, det_part = (a + d) / 2, np.sqrt(((a - d) / 2) ** 2 + b * b)
        l1, l2 = half_trace + det_part, half_trace - det_part
        out[k] = np.sqrt(max(0.0, 1.0 - l2 / l1)) if l1 > 0 else 0.0
    return out


def split_merge(ov: Overlaps, *, containment: float = CONTAINMENT) -> tuple[np.ndarray, np.ndarray]:
    """Per GT instance the number of predictions lying in it, per prediction the number of GT instances in it.

    A GT instance is split when its count is >= 2, a prediction a merge when
    its count is >= 2 (see the module docstring).

    >>> ov = Overlaps(np.array([10]), np.array([4, 5]), np.array([0, 0]), np.array([0, 1]), np.array([4, 5]))
    >>> [a.tolist() for a in split_merge(ov)]
    [[2], [0, 1]]
    """
    inter = ov.intersection.astype(np.float64)
    pred_in_gt = inter >= containment * ov.pred_area[ov.pred_index]
    gt_in_pred = inter >= containment * ov.gt_area[ov.gt_index]
    fragments = np.bincount(ov.gt_index[pred_in_gt], minlength=ov.n_gt)
    merged = np.bincount(ov.pred_index[gt_in_pred], minlength=ov.n_pred)
    return fragments, merged


@dataclass(frozen=True)
class ImageErrors:
    """One image's matching outcome per instance, with the sizes and shapes the bins use."""

    image: str
    threshold: float
    gt_area: np.ndarray
    gt_eccentricity: np.ndarray
    gt_matched: np.ndarray  # bool per GT instance: matched at IoU >= threshold
    gt_fragments: np.ndarray  # predictions lying in each GT instance (>= 2: split)
    pred_area: np.ndarray
    pred_eccentricity: np.ndarray
    pred_matched: np.ndarray
    pred_merged: np.ndarray  # GT instances lying in each prediction (>= 2: merge)

    @property
    def n_split_gt(self) -> int:
        return int(np.count_nonzero(self.gt_fragments >= 2))

    @property
    def n_merge_pred(self) -> int:
        return int(np.count_nonzero(self.pred_merged >= 2))


def image_errors(gt: InstanceSet, pred: InstanceSet, *, threshold: float = 0.5, image: str = "image",
                 containment: float = CONTAINMENT) -> ImageErrors:
    """Match ``pred`` to ``gt`` at ``threshold`` and measure every instance of both.

    >>> gt = InstanceSet.from_label_image(np.array([[1, 1, 1, 1, 1, 1, 0, 2, 2]]))
    >>> pred = InstanceSet.from_label_image(np.array([[1, 1, 2, 2, 3, 3, 0, 0, 0]]))
    >>> e = image_errors(gt, pred)
    >>> e.gt_matched.tolist(), e.gt_fragments.tolist(), e.pred_matched.tolist()
    ([False, False], [3, 0], [False, False, False])
    """
    if not 0.0 < threshold <= 1.0:
        raise DataError(f"IoU threshold must be in (0, 1], got {threshold}")
    ov = overlaps_from_instances(gt, pred)
    pos = match_pairs(ov, threshold)
    gt_matched = np.zeros(ov.n_gt, dtype=bool)
    pred_matched = np.zeros(ov.n_pred, dtype=bool)
    gt_matched[ov.gt_index[pos]] = True
    pred_matched[ov.pred_index[pos]] = True
    fragments, merged = split_merge(ov, containment=containment)
    return ImageErrors(image, float(threshold), ov.gt_area, eccentricities(gt), gt_matched, fragments,
                       ov.pred_area, eccentricities(pred), pred_matched, merged)


@dataclass(frozen=True)
class BinRecall:
    """Recall of the GT instances of one bin, and precision of the predictions of the same bin."""

    kind: str  # "area" | "eccentricity"
    label: str
    low: float
    high: float
    n_gt: int
    n_gt_matched: int
    recall: float | None
    n_pred: int
    n_pred_matched: int
    precision: float | None


@dataclass(frozen=True)
class ErrorSummary:
    """Error analysis pooled over images: recall / precision per bin, split and merge counts."""

    threshold: float
    n_images: int
    n_gt: int
    n_pred: int
    n_tp: int
    bins: tuple[BinRecall, ...]
    n_split_gt: int
    n_split_fragments: int
    n_merge_pred: int
    n_merged_gt: int
    containment: float = CONTAINMENT

    def to_dict(self) -> dict:
        d = asdict(self)
        for b in d["bins"]:
            b["high"] = None if np.isinf(b["high"]) else b["high"]
        return d


def _bin(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (values >= lo) & (values < hi)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def error_summary(
    images: Iterable[ImageErrors],
    *,
    area_bins: Sequence[tuple[str, float, float]] = AREA_BINS,
    shape_bins: Sequence[tuple[str, float, float]] = ECCENTRICITY_BINS,
) -> ErrorSummary:
    """Pool per-image errors: every GT instance and prediction of every image counts once.

    >>> gt = InstanceSet.from_label_image(np.pad(np.ones((4, 4), np.uint8), 1))
    >>> s = error_summary([image_errors(gt, gt)])
    >>> s.n_tp, [b.recall for b in s.bins if b.n_gt]
    (1, [1.0, 1.0])
    """
    images = list(images)
    if len({e.threshold for e in images}) > 1:
        raise DataError("the images were matched at different IoU thresholds")
    cat = lambda name: np.concatenate([getattr(e, name) for e in images]) if images else np.zeros(0)  # noqa: E731
    g_area, g_ecc, g_ok = cat("gt_area"), cat("gt_eccentricity"), cat("gt_matched").astype(bool)
    p_area, p_ecc, p_ok = cat("pred_area"), cat("pred_eccentricity"), cat("pred_matched").astype(bool)
    bins = []
    for kind, edges, g_val, p_val in (("area", area_bins, g_area, p_area), ("eccentricity", shape_bins, g_ecc, p_ecc)):
        for label, lo, hi in edges:
            gi, pi = _bin(g_val, lo, hi), _bin(p_val, lo, hi)
            n_g, n_gm = int(gi.sum()), int((gi & g_ok).sum())
            n_p, n_pm = int(pi.sum()), int((pi & p_ok).sum())
            bins.append(BinRecall(kind, label, float(lo), float(hi), n_g, n_gm, _ratio(n_gm, n_g), n_p, n_pm,
                                  _ratio(n_pm, n_p)))
    fragments = cat("gt_fragments").astype(np.int64)
    merged = cat("pred_merged").astype(np.int64)
    return ErrorSummary(
        threshold=images[0].threshold if images else 0.5,
        n_images=len(images), n_gt=int(g_area.size), n_pred=int(p_area.size), n_tp=int(g_ok.sum()),
        bins=tuple(bins),
        n_split_gt=int((fragments >= 2).sum()), n_split_fragments=int(fragments[fragments >= 2].sum()),
        n_merge_pred=int((merged >= 2).sum()), n_merged_gt=int(merged[merged >= 2].sum()),
    )


def error_rows(summary: ErrorSummary) -> list[dict]:
    """The bins as tidy dicts (one per bin), e.g. for ``pandas.DataFrame(rows)``."""
    return [{**asdict(b), "high": None if np.isinf(b.high) else b.high, "threshold": summary.threshold}
            for b in summary.bins]


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)  # scipy's default element, built once


def _border(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, _CROSS, border_value=0)


def error_map(grey_rgb: np.ndarray, gt: InstanceSet, pred: InstanceSet, errors: ImageErrors, *,
              alpha: float = 0.45) -> np.ndarray:
    """RGB error map: TP predictions outlined green, FP predictions filled red, FN GT instances filled orange.

    ``grey_rgb`` is the (H, W, 3) uint8 picture to paint on (e.g. the image
    through :func:`cellbench.report.overlay.normalize_for_display`); a copy is
    returned. Fills are blended with ``alpha`` so the cells stay visible, and
    every filled instance gets a full-colour outline.
    """
    rgb = np.asarray(grey_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != tuple(gt.shape):
        raise DataError(f"error map needs an (H, W, 3) picture of the image's shape {tuple(gt.shape)}, "
                        f"got {rgb.shape}")
    out = rgb.astype(np.float64)

    def fill(instances: InstanceSet, which: np.ndarray, color) -> None:
        c = np.array(color, dtype=np.float64)
        for inst, hit in zip(instances, which):
            if not hit:
                continue
            region = out[inst.slices]
            region[inst.mask] = (1 - alpha) * region[inst.mask] + alpha * c
            region[_border(inst.mask)] = c

    fill(gt, ~errors.gt_matched, ERROR_COLORS["fn"])
    fill(pred, ~errors.pred_matched, ERROR_COLORS["fp"])
    for inst, hit in zip(pred, errors.pred_matched):
        if hit:
            out[inst.slices][_border(inst.mask)] = ERROR_COLORS["tp"]
    return np.round(out).astype(np.uint8)
