"""``watershed``: the classical baseline, with its few parameters tuned on the training images.

The recipe every image-analysis course teaches, in pure functions:

1. one channel, percentile normalisation (and CLAHE if asked);
2. Gaussian smoothing (``sigma``), Otsu threshold scaled by ``threshold_scale``
   (objects brighter or darker than the background: ``bright``), holes filled;
3. Euclidean distance transform of the foreground, smoothed by
   ``distance_sigma``;
4. one seed per local maximum of the distance at least ``min_distance`` px
   apart; seeded watershed on the negative distance inside the foreground;
5. objects smaller than ``min_size`` px dropped.

With the default :class:`WatershedParams` (no smoothing, Otsu as is, every
local maximum a seed, nothing dropped) this is the plain Otsu + distance
transform + watershed recipe. :meth:`WatershedMethod.train` picks polarity,
size filter and a grid of the other parameters by pooled F1 (averaged over
IoU 0.5 to 0.9) on the training images (validation images, when given, only
report their F1 at IoU 0.5).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import watershed

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.matching import match_labels, pooled
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.preprocess import PreprocessConfig, preprocess, to_gray
from cellbench.methods.tiling import TileConfig
from cellbench.methods.validation import validation_f1

__all__ = ["WatershedConfig", "WatershedMethod", "WatershedParams", "segment"]

PARAMS_FILE = "watershed_params.json"


@dataclass(frozen=True)
class WatershedParams:
    """The parameters ``train`` tunes (the defaults are the plain recipe)."""

    bright: bool = True
    sigma: float = 0.0
    threshold_scale: float = 1.0
    distance_sigma: float = 0.0
    min_distance: int = 1
    min_size: int = 0


@dataclass(frozen=True)
class WatershedConfig:
    """Fixed settings and the search grid of the watershed baseline.

    Attributes:
        preprocess: per-image normalisation (and optional CLAHE).
        flatten: how overlapping training annotations become label images for scoring.
        sigmas, threshold_scales, distance_sigmas: values tried for those parameters.
        min_distance_fractions: seed spacing tried, as fractions of the median
            object diameter of the training annotations.
        min_size_fraction: objects smaller than this fraction of the 5th
            percentile of training object areas are dropped.
        tune_ious: the tuning score is the pooled F1 averaged over these IoU
            thresholds (matched as :mod:`cellbench.metrics` does, IoU >= t):
            F1 at 0.5 alone cannot tell apart settings
            that find the same cells with better or worse outlines, and a few
            dozen training cells give many such ties.
    """

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    flatten: str = "priority-last"
    sigmas: tuple[float, ...] = (0.0, 1.0, 2.0)
    threshold_scales: tuple[float, ...] = (0.6, 0.75, 0.9, 1.0, 1.1, 1.25)
    distance_sigmas: tuple[float, ...] = (0.0, 1.0, 2.0)
    min_distance_fractions: tuple[float, ...] = (0.15, 0.25, 0.35, 0.45, 0.6)
    min_size_fraction: float = 0.3
    tune_ious: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)

    def __post_init__(self) -> None:
        policy_from_name(self.flatten)  # raises for an unknown name
        if not self.tune_ious or min(self.tune_ious) < 0.5 or max(self.tune_ious) >= 1:
            raise ValueError(f"tune_ious must lie in [0.5, 1), got {self.tune_ious}")
        for name in ("sigmas", "threshold_scales", "distance_sigmas", "min_distance_fractions"):
            if not getattr(self, name):
                raise ValueError(f"{name} must list at least one value")


def _foreground(image: np.ndarray, params: WatershedParams) -> np.ndarray:
    smooth = gaussian(image, sigma=params.sigma, preserve_range=True) if params.sigma > 0 else image
    if not params.bright:
        smooth = -smooth
    if np.ptp(smooth) == 0:
        return np.zeros(image.shape, dtype=bool)
    level = threshold_otsu(smooth)
    low = float(smooth.min())
    # scale the threshold's height above the darkest pixel, so the scale means the same for both polarities
    return ndimage.binary_fill_holes(smooth > low + params.threshold_scale * (level - low))


def _distance(foreground: np.ndarray, sigma: float) -> np.ndarray:
    distance = ndimage.distance_transform_edt(foreground)
    return gaussian(distance, sigma=sigma, preserve_range=True) if sigma > 0 else distance


def _seeded(foreground: np.ndarray, distance: np.ndarray, params: WatershedParams) -> np.ndarray:
    """Watershed of ``-distance`` inside the foreground from one seed per local maximum of the distance.

    A foreground component left without a seed (its maximum was within
    ``min_distance`` of a higher one across the background) becomes one object.
    """
    peaks = peak_local_max(distance, min_distance=max(1, int(params.min_distance)), exclude_border=False)
    peaks = peaks[foreground[tuple(peaks.T)]] if len(peaks) else peaks
    markers = np.zeros(foreground.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=foreground).astype(np.int32)
    unseeded, n = ndimage.label(foreground & (labels == 0))
    if n:
        labels[unseeded > 0] = unseeded[unseeded > 0] + len(peaks)
    if params.min_size > 0:
        areas = np.bincount(labels.ravel())
        small = areas < params.min_size
        small[0] = False
        labels[small[labels]] = 0
    return labels


def _split(foreground: np.ndarray, params: WatershedParams) -> np.ndarray:
    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.int32)
    return _seeded(foreground, _distance(foreground, params.distance_sigma), params)


def segment(image: np.ndarray, params: WatershedParams, *, prep: PreprocessConfig | None = None) -> np.ndarray:
    """Label image of ``image`` (H x W or H x W x C) by the watershed recipe with ``params``.

    >>> img = np.zeros((40, 60)); img[10:30, 8:28] = 1; img[12:28, 34:50] = 1
    >>> int(segment(img, WatershedParams(min_distance=5)).max())
    2
    """
    gray = preprocess(to_gray(image), prep or PreprocessConfig())
    return _split(_foreground(gray, params), params)


class WatershedMethod(Method):
    """Otsu threshold, distance transform and seeded watershed, tuned on the training images."""

    name = "watershed"
    version = "1"
    description = "classical baseline: normalise, threshold, distance transform, seeded watershed (tuned)"
    requires = ()
    extra = None
    Config = WatershedConfig
    #: Whole images: the Otsu threshold and the seed spacing are set from the whole image (per-tile
    #: thresholds find spurious objects in tiles without cells).
    default_tiling = TileConfig(tile=0)
    #: The tuning is a grid search over the config's lists: no random numbers.
    seeded = False

    def __init__(self, config: WatershedConfig | None = None) -> None:
        super().__init__(config)
        self.params = WatershedParams()

    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,  # not resumable: accepted and ignored
    ) -> TrainHistory:
        """Choose the parameters with the best pooled F1 (mean over ``tune_ious``) on ``train``; deterministic."""
        if not train:
            raise DataError("watershed: no training images")
        start = time.perf_counter()
        policy = policy_from_name(self.config.flatten)
        images = [preprocess(to_gray(s.load_image()), self.config.preprocess) for s in train]
        truths = [flatten(s.instances, policy).labels for s in train]
        areas = np.concatenate([s.instances.areas for s in train] or [np.zeros(0)])
        if areas.size == 0:
            raise DataError("watershed: the training images have no annotated object")
        diameter = 2.0 * np.sqrt(np.median(areas) / np.pi)
        bright = _objects_are_bright(images, truths)
        min_size = int(self.config.min_size_fraction * np.percentile(areas, 5))
        min_distances = sorted({max(1, round(f * diameter)) for f in self.config.min_distance_fractions})

        grid = list(itertools.product(self.config.sigmas, self.config.threshold_scales))
        bar = progress(grid, desc="watershed tuning", unit="setting") if progress else grid
        tune = tuple(self.config.tune_ious)
        ious = (0.5, *tune)  # F1@0.5 first: reported on its own
        best, best_score, best_f1, n_tried = WatershedParams(bright=bright), -1.0, -1.0, 0
        for sigma, scale in bar:
            base = WatershedParams(bright=bright, sigma=sigma, threshold_scale=scale, min_size=min_size)
            foregrounds = [_foreground(img, base) for img in images]
            for dsigma in self.config.distance_sigmas:
                distances = [_distance(fg, dsigma) for fg in foregrounds]
                for mind in min_distances:
                    params = dataclasses.replace(base, distance_sigma=dsigma, min_distance=mind)
                    counts = [
                        match_labels(t, _seeded(fg, d, params) if fg.any() else np.zeros_like(t), ious)
                        for t, fg, d in zip(truths, foregrounds, distances)
                    ]
                    score = float(np.mean([pooled(c[k] for c in counts).f1 for k in range(1, len(ious))]))
                    n_tried += 1
                    if score > best_score + 1e-12:
                        best, best_score, best_f1 = params, score, pooled(c[0] for c in counts).f1
        self.params = best
        val = None
        if valid:
            val = validation_f1(valid, self._labels, flatten_policy=self.config.flatten)
        record = EpochRecord(epoch=0, loss=1.0 - best_score, val_score=val,
                             extra={"train_f1": best_f1, "settings_tried": n_tried})
        return TrainHistory(
            epochs=(record,), val_metric="f1@0.5" if valid else None, best_epoch=0,
            wall_s=time.perf_counter() - start,
            info={"params": dataclasses.asdict(best), "median_diameter": float(diameter),
                  "loss": f"1 - pooled F1 averaged over IoU {list(tune)} on the training images"},
        )

    def _labels(self, image: np.ndarray) -> np.ndarray:
        return segment(image, self.params, prep=self.config.preprocess)

    def predict(self, image: np.ndarray) -> InstanceSet:
        return InstanceSet.from_label_image(self._labels(image))

    def save_weights(self, folder: Path) -> None:
        (Path(folder) / PARAMS_FILE).write_text(json.dumps(dataclasses.asdict(self.params), indent=2))

    def load_weights(self, folder: Path) -> None:
        path = Path(folder) / PARAMS_FILE
        try:
            values = json.loads(path.read_text())
            params = WatershedParams(**values)
        except FileNotFoundError as exc:
            raise DataError("watershed parameters file missing", path=path) from exc
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"bad watershed parameters ({exc})", path=path) from exc
        for name, value in vars(params).items():
            kind = bool if name == "bright" else (int, float)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise DataError(f"watershed parameter {name} must be a {'boolean' if kind is bool else 'number'}, "
                                f"got {value!r:.40}", path=path)
        self.params = params


def _objects_are_bright(images: list[np.ndarray], truths: list[np.ndarray]) -> bool:
    """Are annotated objects brighter than the background, on average over the training images?"""
    inside = np.concatenate([img[t > 0] for img, t in zip(images, truths)])
    outside = np.concatenate([img[t == 0] for img, t in zip(images, truths)])
    if inside.size == 0 or outside.size == 0:
        return True
    return bool(np.median(inside) >= np.median(outside))
