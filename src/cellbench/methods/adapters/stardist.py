"""``stardist``: StarDist 2D (the ``stardist`` package on TensorFlow), trained and run as its users do.

What StarDist's own 2D training notebook does, step by step:

* images normalised per image by percentiles 1 / 99.8 (``csbdeep.utils.normalize``);
* a ``Config2D`` (rays, grid, U-Net depth, patch size, epochs, steps per epoch
  are config fields here, with the notebook's values as defaults) and
  ``StarDist2D.train`` on random patches, with the notebook's augmentation
  (random 90 degree rotations by axis permutation and flips, a random
  intensity scale and shift, a little Gaussian noise), keeping the weights of
  the best validation loss (StarDist's checkpoint);
* ``optimize_thresholds`` on the validation images (probability and NMS
  thresholds);
* ``predict_instances``: the label image, and each object's probability as
  its instance score (so COCO metrics apply).

Validation images: the ones given to ``train``; without them StarDist's
notebook holds out 15 % of the training images (here ``valid_fraction``, at
least one image, at least one left to train); a single training image
validates on itself (thresholds are then tuned on the training image).

Large images: StarDist's own ``n_tiles`` inside ``predict_instances``, not
cellbench's tiling. StarDist normalises the whole image once, predicts tiles
with enough context for its receptive field and runs the non-maximum
suppression once over the whole image, so an object cut by a tile border is
one object; cutting the image before StarDist would normalise each tile
differently and cut objects. ``default_tiling`` is therefore ``tile=0``.

Pretrained models (``2D_versatile_fluo``, ``2D_versatile_he``,
``2D_paper_dsb2018``, or a path to a StarDist model folder or its zip) come
from :func:`cellbench.pretrained.resolve_pretrained`: the registry downloads
and checks StarDist's zip of a model folder (config.json, thresholds.json,
weights) and unpacks it; a local zip is unpacked into a temporary folder
here. The folder is read with StarDist's config and Keras' HDF5 reader. ``predict``
on an untrained method with ``pretrained`` set is zero-shot; ``train`` with
it fine-tunes from those weights.

Weights in a model directory: ``stardist.weights.h5`` (Keras 3 HDF5, no
pickle), ``config.json`` (StarDist's ``Config2D`` as JSON) and
``thresholds.json`` (probability and NMS thresholds). Loading reads only
weights into a network StarDist builds from the config (no Keras model file is
deserialised), and the config must hold plain values (:func:`_check_config`).

Determinism: ``keras.utils.set_random_seed`` seeds Python, NumPy and
TensorFlow, and ``tf.config.experimental.enable_op_determinism`` makes
TensorFlow's ops deterministic. On a CPU TensorFlow then gives the same
weights for the same seed, data and thread settings on the same machine and
TF build; it does not promise the same numbers on another CPU or TF
version (oneDNN picks kernels per CPU). Op determinism is a process-wide
TensorFlow setting, and stays on after ``train``.

TensorFlow and stardist are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.tiling import TileConfig
from cellbench.methods.validation import pooled_f1

__all__ = ["CONFIG_FILE", "StarDistConfig", "StarDistMethod", "THRESHOLDS_FILE", "WEIGHTS_FILE",
           "unpack_model_folder"]

WEIGHTS_FILE = "stardist.weights.h5"
CONFIG_FILE = "config.json"
THRESHOLDS_FILE = "thresholds.json"
_PRETRAINED_WEIGHTS = ("weights_best.h5", "weights_last.h5", "weights_best.weights.h5", WEIGHTS_FILE)


@dataclass(frozen=True)
class StarDistConfig:
    """StarDist 2D settings; names follow ``Config2D`` (``train_`` and ``unet_`` prefixes kept where they are).

    Attributes:
        pretrained: a registered StarDist model name (``2D_versatile_fluo``,
            ``2D_versatile_he``, ``2D_paper_dsb2018``) or a path to a model
            folder or its zip; None trains from scratch. Its network settings
            (rays, grid, U-Net) replace the ones below.
        n_rays, grid: star-convex polygon rays and the output grid (subsampling).
        unet_n_depth, unet_n_filter_base, unet_kernel_size, net_conv_after_unet: the U-Net backbone.
        train_patch_size: side of the training patches (y, x); divisible by
            grid x 2**unet_n_depth.
        train_batch_size, train_epochs, train_steps_per_epoch, train_learning_rate:
            the optimiser schedule (Adam; the learning rate halves after 40
            epochs without improvement, StarDist's default).
        train_dist_loss: ``mae`` (StarDist's default), ``mse`` or ``iou``.
        train_n_val_patches: validation patches drawn once for the validation
            loss that picks the best epoch; None is one per validation image (StarDist's default).
        augment: the notebook's flips / rotations / intensity / noise augmentation.
        norm_low, norm_high: normalisation percentiles (StarDist: 1 and 99.8).
        valid_fraction: training images held out for validation when ``train``
            gets none (the notebook's 15 %).
        optimize_thresholds: tune the probability and NMS thresholds on the
            validation images after training; ``nms_threshs`` and
            ``iou_threshs`` as in ``StarDist2D.optimize_thresholds``.
        prob_thresh, nms_thresh: fixed thresholds for prediction, over the tuned ones.
        tile_px: predict images larger than this (per side) in StarDist's
            ``n_tiles`` (``ceil(side / tile_px)`` tiles per side).
        flatten: how overlapping training annotations become label images.
    """

    pretrained: str | None = None
    n_rays: int = 32
    grid: tuple[int, int] = (2, 2)
    unet_n_depth: int = 3
    unet_n_filter_base: int = 32
    unet_kernel_size: tuple[int, int] = (3, 3)
    net_conv_after_unet: int = 128
    train_patch_size: tuple[int, int] = (256, 256)
    train_batch_size: int = 4
    train_epochs: int = 400
    train_steps_per_epoch: int = 100
    train_learning_rate: float = 3e-4
    train_dist_loss: Literal["mae", "mse", "iou"] = "mae"
    train_n_val_patches: int | None = None
    augment: bool = True
    norm_low: float = 1.0
    norm_high: float = 99.8
    valid_fraction: float = 0.15
    optimize_thresholds: bool = True
    nms_threshs: tuple[float, ...] = (0.3, 0.4, 0.5)
    iou_threshs: tuple[float, ...] = (0.3, 0.5, 0.7)
    prob_thresh: float | None = None
    nms_thresh: float | None = None
    tile_px: int = 1024
    flatten: str = "priority-last"

    def __post_init__(self) -> None:
        policy_from_name(self.flatten)
        if len(self.grid) != 2 or len(self.train_patch_size) != 2 or len(self.unet_kernel_size) != 2:
            raise ValueError("grid, train_patch_size and unet_kernel_size take two integers (y, x)")
        if self.n_rays < 3 or self.unet_n_depth < 1 or min(self.grid) < 1:
            raise ValueError(f"need n_rays >= 3, unet_n_depth >= 1, grid >= 1; got {self.n_rays}, "
                             f"{self.unet_n_depth}, {self.grid}")
        for side, g in zip(self.train_patch_size, self.grid):
            if side % (g * 2 ** self.unet_n_depth):
                raise ValueError(f"train_patch_size {tuple(self.train_patch_size)} must be divisible by "
                                 f"grid x 2**unet_n_depth = {tuple(g * 2 ** self.unet_n_depth for g in self.grid)}")
        if self.train_epochs < 1 or self.train_steps_per_epoch < 1 or self.train_batch_size < 1:
            raise ValueError("train_epochs, train_steps_per_epoch and train_batch_size must be >= 1")
        if not 0.0 <= self.norm_low < self.norm_high <= 100.0:
            raise ValueError(f"need 0 <= norm_low < norm_high <= 100, got {self.norm_low}, {self.norm_high}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.tile_px < 64:
            raise ValueError(f"tile_px must be at least 64, got {self.tile_px}")


# -- pretrained model folders -----------------------------------------------------------------------------
def unpack_model_folder(path: Path, into: Path) -> Path:
    """The StarDist model folder in ``path``: the folder itself, or a zip of it unpacked into ``into``.

    The folder is the one holding ``config.json`` (the zip's top level or its
    single sub-folder, as StarDist's registry ships them). Members that would
    land outside ``into`` are refused.
    """
    path = Path(path)
    if path.is_dir():
        folder = path
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            root = into.resolve()
            for member in archive.namelist():
                target = (root / member).resolve()
                if not target.is_relative_to(root):
                    raise DataError(f"zip member {member!r} lies outside the archive's folder", path=path)
            archive.extractall(root)
        found = sorted(p.parent for p in root.rglob(CONFIG_FILE))
        if not found:
            raise DataError(f"no StarDist model folder ({CONFIG_FILE}) in the zip", path=path)
        folder = found[0]
    elif path.exists():
        raise DataError("not a StarDist model folder or a zip of one", path=path)
    else:
        raise DataError("pretrained StarDist model not found", path=path)
    if not (folder / CONFIG_FILE).is_file():
        raise DataError(f"not a StarDist model folder (no {CONFIG_FILE})", path=folder)
    return folder


def _resolve_pretrained(name: str) -> Path:
    """The file or folder ``name`` stands for: a local path as given, else the registry's verified download
    (for StarDist's zips, the unpacked folder)."""
    from cellbench.pretrained import resolve_pretrained

    return Path(resolve_pretrained(name, method="stardist"))


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError("file missing from the StarDist model folder", path=path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not a readable JSON file ({exc})", path=path) from exc
    if not isinstance(values, dict):
        raise DataError(f"expected a JSON object, got {type(values).__name__}", path=path)
    return values


def _check_config(values: dict, path: Path) -> None:
    """``config.json`` holds plain values: no mapping Keras would deserialise into a layer, function or lambda.

    StarDist hands the ``unet_*`` values to Keras layers (``activation=``), and Keras turns a mapping
    into an object by its class name (a ``__lambda__`` holds marshalled code); checkpoint names must be
    file names (StarDist's training writes weights to them).
    """
    def plain(value: Any) -> bool:
        return value is None or isinstance(value, (bool, int, float, str)) or (
            isinstance(value, list) and all(plain(v) for v in value))

    for key, value in values.items():
        if key == "train_reduce_lr" and value is not None:
            ok = isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values())
        elif key.endswith(("activation", "_init")) and value is not None:
            ok = isinstance(value, str) and value.isidentifier()
        elif key.startswith("train_checkpoint") and value is not None:
            ok = isinstance(value, str) and value == Path(value).name and value not in ("", ".", "..")
        else:
            ok = plain(value)
        if not ok:
            raise DataError(f"StarDist config {key!r:.40} must be a plain value (a name, number or list), "
                            f"got {value!r:.80}", path=path)


def _model_from_folder(folder: Path, weights_names: Sequence[str]) -> Any:
    """A ``StarDist2D`` built from ``config.json`` in ``folder`` (checked to be plain values), its weights
    and thresholds loaded."""
    from stardist.models import Config2D, StarDist2D

    config_path = folder / CONFIG_FILE
    values = _read_json(config_path)
    _check_config(values, config_path)
    if values.get("n_dim", 2) != 2:
        raise DataError(f"a {values.get('n_dim')}D StarDist model; the stardist method is 2D", path=config_path)
    try:
        config = Config2D(**Config2D.update_loaded_config(values))
        with _quiet():
            model = StarDist2D(config, basedir=None)
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"not a StarDist 2D config ({exc})", path=config_path) from exc
    weights = next((folder / n for n in weights_names if (folder / n).is_file()), None)
    if weights is None:
        raise DataError(f"no weights file ({', '.join(weights_names)}) in the StarDist model folder", path=folder)
    try:
        model.keras_model.load_weights(str(weights))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"weights do not fit the StarDist network of {CONFIG_FILE} ({exc})", path=weights) from exc
    thresholds = folder / THRESHOLDS_FILE
    if thresholds.is_file():
        model.thresholds = _thresholds(_read_json(thresholds), thresholds)
    return model


def _thresholds(values: dict, path: Path) -> dict:
    try:
        out = {"prob": float(values["prob"]), "nms": float(values["nms"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"thresholds need numbers 'prob' and 'nms' ({exc!r})", path=path) from exc
    if not all(0.0 < v < 1.0 for v in out.values()):
        raise DataError(f"thresholds must lie in (0, 1), got {out}", path=path)
    return out


# -- images -------------------------------------------------------------------------------------------------
def _channels(image: np.ndarray, n_channel_in: int, name: str = "image") -> np.ndarray:
    """``image`` with the network's channels: H x W for one channel, H x W x C otherwise."""
    if image.ndim == 2:
        return image if n_channel_in == 1 else np.repeat(image[..., None], n_channel_in, axis=-1)
    if image.ndim == 3 and image.shape[-1] == n_channel_in:
        return image[..., 0] if n_channel_in == 1 else image
    if image.ndim == 3 and n_channel_in == 1:
        return image.mean(axis=-1)  # a colour image shown to a one-channel network: its grey levels
    raise DataError(f"{name} has shape {image.shape}; this StarDist network takes {n_channel_in} channel(s)")


def _normalize(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """StarDist's normalisation: percentiles of each channel mapped to 0 and 1 (``csbdeep.utils.normalize``)."""
    from csbdeep.utils import normalize

    return normalize(image.astype(np.float32), low, high, axis=(0, 1)).astype(np.float32)


def _augmenter(rng: np.random.Generator):
    """The augmentation of StarDist's training notebook, drawn from ``rng``.

    Random 90 degree rotations (axis permutation, only for square patches) and
    flips of image and labels; intensity ``x * U(0.6, 2) + U(-0.2, 0.2)``;
    Gaussian noise of standard deviation ``0.02 * U(0, 1)``.
    """

    def augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if y.shape[0] == y.shape[1] and rng.random() < 0.5:
            x, y = np.swapaxes(x, 0, 1), y.T
        for axis in (0, 1):
            if rng.random() < 0.5:
                x, y = np.flip(x, axis), np.flip(y, axis)
        x = x * rng.uniform(0.6, 2.0) + rng.uniform(-0.2, 0.2)
        x = x + 0.02 * rng.uniform() * rng.normal(size=x.shape)
        return x.astype(np.float32), np.ascontiguousarray(y)

    return augment


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keras' step-by-step bar and StarDist's prints go nowhere; cellbench shows its own progress.

    Two warnings that say nothing to a cellbench user are dropped too: Keras ignoring ``shuffle``
    for StarDist's patch generator, and csbdeep noting the Keras 3 weights format cellbench chose.
    """
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed")
        warnings.filterwarnings("ignore", message=r"Detected filename suffix '\.weights\.h5'")
        yield


def _progress_callback(progress: ProgressFactory | None, epochs: int, steps: int) -> Any:
    """A Keras callback that advances an epoch bar and, inside it, a bar of the epoch's steps."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.epochs = iter(progress(range(epochs), desc="stardist training", unit="epoch")) if progress else None
            self.steps: Iterator | None = None
            if self.epochs is not None:
                next(self.epochs, None)

        def on_epoch_begin(self, epoch, logs=None):
            if progress:
                self.steps = iter(progress(range(steps), desc=f"epoch {epoch + 1}", unit="step", leave=False))

        def on_train_batch_end(self, batch, logs=None):
            if self.steps is not None:
                next(self.steps, None)

        def on_epoch_end(self, epoch, logs=None):
            if self.steps is not None:
                for _ in self.steps:  # finish (and close) the step bar
                    pass
            if self.epochs is not None:
                next(self.epochs, None)

    return Progress()


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    tf.config.experimental.enable_op_determinism()


class StarDistMethod(Method):
    """StarDist 2D: train from scratch or fine-tune a pretrained model; ``predict_instances`` with scores."""

    name = "stardist"
    version = "1"
    description = "StarDist 2D (TensorFlow): star-convex polygons; from scratch, fine-tuned or pretrained zero-shot"
    requires = ("tensorflow", "stardist")
    extra = "stardist"
    Config = StarDistConfig
    #: Whole images: StarDist tiles inside ``predict_instances`` (``n_tiles``), see the module docstring.
    default_tiling = TileConfig(tile=0)
    #: ``cpu``: the notebook's network on 128 px patches, 1,600 steps (the DSB row of the README,
    #: examples/configs/dsb/stardist.yaml); the notebook's 400 x 100 steps of 256 px patches take
    #: many hours on a CPU.
    presets = {"cpu": {"train_patch_size": [128, 128], "train_epochs": 32, "train_steps_per_epoch": 50}}

    def __init__(self, config: StarDistConfig | None = None) -> None:
        super().__init__(config)
        self._model: Any = None

    # -- building -----------------------------------------------------------------------------------------
    def _pretrained_model(self) -> Any:
        with tempfile.TemporaryDirectory(prefix="cellbench-stardist-") as scratch:
            folder = unpack_model_folder(_resolve_pretrained(self.config.pretrained), Path(scratch))
            return _model_from_folder(folder, _PRETRAINED_WEIGHTS)

    def _new_model(self, n_channel_in: int) -> Any:
        from stardist.models import Config2D, StarDist2D

        cfg = self.config
        config = Config2D(
            n_rays=cfg.n_rays, grid=tuple(cfg.grid), n_channel_in=n_channel_in,
            unet_n_depth=cfg.unet_n_depth, unet_n_filter_base=cfg.unet_n_filter_base,
            unet_kernel_size=tuple(cfg.unet_kernel_size), net_conv_after_unet=cfg.net_conv_after_unet,
            train_tensorboard=False,  # TensorBoard logging does not run on Keras 3
        )
        with _quiet():
            return StarDist2D(config, basedir=None)

    def _set_training(self, model: Any) -> None:
        """This config's training settings on ``model``'s ``Config2D`` (network settings stay)."""
        cfg = self.config
        model.config.train_patch_size = tuple(cfg.train_patch_size)
        model.config.train_batch_size = cfg.train_batch_size
        model.config.train_epochs = cfg.train_epochs
        model.config.train_steps_per_epoch = cfg.train_steps_per_epoch
        model.config.train_learning_rate = cfg.train_learning_rate
        model.config.train_dist_loss = cfg.train_dist_loss
        model.config.train_n_val_patches = cfg.train_n_val_patches
        model.config.train_tensorboard = False

    def _arrays(self, samples: Sequence[Sample], n_channel_in: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        cfg = self.config
        policy = policy_from_name(cfg.flatten)
        images, labels = [], []
        for s in samples:
            image = _channels(s.load_image(), n_channel_in, f"image {s.name!r}")
            if any(side < p for side, p in zip(image.shape[:2], cfg.train_patch_size)):
                raise DataError(f"stardist: image {s.name!r} ({image.shape[0]} x {image.shape[1]}) is smaller than "
                                f"train_patch_size {tuple(cfg.train_patch_size)}; lower train_patch_size")
            images.append(_normalize(image, cfg.norm_low, cfg.norm_high))
            labels.append(flatten(s.instances, policy).labels.astype(np.int32))
        return images, labels

    def _split(self, train: Sequence[Sample], valid: Sequence[Sample] | None,
               seed: int) -> tuple[list[Sample], list[Sample], str]:
        """Training and validation samples, and where the validation images came from."""
        if valid:
            return list(train), list(valid), "given"
        n = len(train)
        n_val = max(1, round(self.config.valid_fraction * n)) if self.config.valid_fraction > 0 else 0
        if n_val == 0 or n - n_val < 1:
            return list(train), list(train), "training images"
        order = np.random.default_rng(seed).permutation(n)
        held = set(order[:n_val].tolist())
        return ([s for i, s in enumerate(train) if i not in held], [s for i, s in enumerate(train) if i in held],
                f"{n_val} held-out training image(s)")

    # -- the interface ----------------------------------------------------------------------------------
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,  # not resumable: accepted and ignored
    ) -> TrainHistory:
        """``StarDist2D.train`` on patches, best validation loss kept; thresholds tuned on the validation images."""
        if not train:
            raise DataError("stardist: no training images")
        cfg = self.config
        _seed_everything(seed)
        if cfg.pretrained:
            model = self._pretrained_model()
            n_channel_in = model.config.n_channel_in
        else:
            first = train[0].load_image()
            n_channel_in = 1 if first.ndim == 2 else first.shape[-1]
            model = self._new_model(n_channel_in)
        self._set_training(model)
        fit_samples, val_samples, val_source = self._split(train, valid, seed)
        x_train, y_train = self._arrays(fit_samples, n_channel_in)
        x_val, y_val = self._arrays(val_samples, n_channel_in)
        augmenter = _augmenter(np.random.default_rng(seed)) if cfg.augment else None
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cellbench-stardist-") as scratch:
            model.basedir, model.logdir = Path(scratch), Path(scratch)  # StarDist's best-weights checkpoint
            model.prepare_for_training()
            model.callbacks.append(_progress_callback(progress, cfg.train_epochs, cfg.train_steps_per_epoch))
            with _quiet():
                fit = model.train(x_train, y_train, validation_data=(x_val, y_val), augmenter=augmenter,
                                  seed=seed, epochs=cfg.train_epochs, steps_per_epoch=cfg.train_steps_per_epoch)
            model.basedir = None
        if cfg.optimize_thresholds:
            with _quiet():
                model.optimize_thresholds(x_val, y_val, nms_threshs=list(cfg.nms_threshs),
                                          iou_threshs=list(cfg.iou_threshs), save_to_json=False,
                                          predict_kwargs={"n_tiles": None}, optimize_kwargs={"verbose": 0})
        wall = time.perf_counter() - start
        self._model = model
        val = pooled_f1((lab, self._labels(img)[0]) for img, lab in zip(x_val, y_val))
        losses, val_losses = fit.history.get("loss", []), fit.history.get("val_loss", [])
        best = int(np.argmin(val_losses)) if val_losses else len(losses) - 1
        epochs = tuple(
            EpochRecord(epoch=k, loss=float(loss), val_score=val if k == len(losses) - 1 else None,
                        extra={"val_loss": float(val_losses[k])} if k < len(val_losses) else {})
            for k, loss in enumerate(losses)
        )
        return TrainHistory(
            epochs=epochs, val_metric="f1@0.5", best_epoch=best, wall_s=wall,
            info={"from": cfg.pretrained or "scratch", "validation": val_source,
                  "thresholds": dict(model.thresholds._asdict()), "n_channel_in": int(n_channel_in),
                  "weights": "best validation loss (StarDist checkpoint)",
                  "loss": f"BCE (object probability) + 0.2 x masked {cfg.train_dist_loss} (ray distances)"},
        )

    def _require_model(self) -> Any:
        if self._model is None:
            if not self.config.pretrained:
                raise DataError("stardist: train or load weights before predicting (or set pretrained)")
            self._model = self._pretrained_model()
        return self._model

    def _labels(self, normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label image and per-label object probability (index = label - 1) of a normalised image."""
        cfg = self.config
        model = self._require_model()
        n_tiles = tuple(max(1, math.ceil(side / cfg.tile_px)) for side in normalized.shape[:2])
        if normalized.ndim == 3:
            n_tiles = (*n_tiles, 1)
        with _quiet():
            labels, details = model.predict_instances(
                normalized, n_tiles=n_tiles if max(n_tiles) > 1 else None, show_tile_progress=False,
                prob_thresh=cfg.prob_thresh, nms_thresh=cfg.nms_thresh,
            )
        return np.asarray(labels, np.int32), np.asarray(details["prob"], np.float64)

    def predict(self, image: np.ndarray) -> InstanceSet:
        """StarDist's label image; each instance's score is its object probability."""
        model = self._require_model()
        x = _normalize(_channels(image, model.config.n_channel_in), self.config.norm_low, self.config.norm_high)
        labels, prob = self._labels(x)
        found = InstanceSet.from_label_image(labels)
        scored = tuple(inst.replace(score=float(prob[inst.source_id - 1])) for inst in found)
        return found.replace(instances=scored)

    def save_weights(self, folder: Path) -> None:
        folder = Path(folder)
        model = self._require_model()
        with _quiet():
            model.keras_model.save_weights(str(folder / WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(vars(model.config), indent=2, default=_json_value))
        (folder / THRESHOLDS_FILE).write_text(json.dumps(dict(model.thresholds._asdict()), indent=2))

    def load_weights(self, folder: Path) -> None:
        self._model = _model_from_folder(Path(folder), (WEIGHTS_FILE,))


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
