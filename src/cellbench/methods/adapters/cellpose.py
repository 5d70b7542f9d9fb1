"""``cellpose``: the Cellpose 3 package, trained and run the way its users do.

Training goes through ``cellpose.train.train_seg`` on a
``cellpose.models.CellposeModel``: from scratch (random initialisation, works
offline), or fine-tuned from pretrained weights (the Glioma C6 paper
fine-tuned ``cyto3``). Prediction is ``CellposeModel.eval`` with its usual
parameters (diameter, flow and cellprob thresholds, minimum size).

Pretrained weights (``pretrained: cyto3``, ``nuclei``, ``cyto2`` or a file
path) come from cellbench's registry (:mod:`cellbench.pretrained`): the files
Cellpose 3 itself downloads, fetched and checked by cellbench (Cellpose's own
download checks nothing and turns TLS verification off). An untrained method
with ``pretrained`` set predicts zero-shot (``train_images: 0`` in ``cellbench
run``), as ``cellpose.models.Cellpose(model_type=...)`` does: the registry's
diameter convention (30 px, nuclei 17 px) and, when no ``diameter`` is
given, the model's size model to estimate each image's object diameter.

Why Cellpose 3 (``cellpose>=3.1,<4``): ``cyto3`` and the paper's fine-tuning
protocol belong to 3.x; Cellpose 4 (Cellpose-SAM) is a ViT-L that takes
about 90 s per 512 x 512 image on a CPU (issue 4; not measured here), and its files do not load in
3.x (both ways), so a model directory names the major version it needs.

The weights file in a model directory is Cellpose's own format
(``torch.save`` of the network's state dict, diameters included), so
``CellposeModel(pretrained_model=".../weights/cellpose_model.pth")`` opens it
too. Loading reads it with ``torch.load(..., weights_only=True)``.

torch and cellpose are imported inside the functions that need them, so
``cellbench methods`` can list this method without them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.files.digest import bytes_digest
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.device import check_threads, on_config_threads
from cellbench.methods.preprocess import PreprocessConfig, preprocess
from cellbench.methods.tiling import TileConfig
from cellbench.methods.validation import validation_f1
from cellbench.methods.seeding import seed_torch
from cellbench.methods.torch_file import read_state_dict

__all__ = ["CellposeConfig", "CellposeMethod", "WEIGHTS_FILE", "read_cellpose_weights", "read_size_model"]

WEIGHTS_FILE = "cellpose_model.pth"
_EPOCH_LINE = re.compile(r"^(\d+), train_loss=")


@dataclass(frozen=True)
class CellposeConfig:
    """Cellpose training and prediction settings (names as in ``train_seg`` and ``eval``).

    Attributes:
        pretrained: pretrained weights: a registry name (``cyto3``, ``nuclei``,
            ``cyto2``, or ``cellpose/cyto3``...; ``cellbench models list --method
            cellpose``) fetched and checked into the cache, or a Cellpose 3 model
            file. ``train`` fine-tunes from it; without training it predicts zero-shot.
        pretrained_model: path of a Cellpose 3 model file to fine-tune (the
            older, path-only setting; give ``pretrained`` or this, not both);
            neither trains from scratch.
        diam_mean: object diameter (px) the network works at; 30 for
            cytoplasm models, 17 for nuclei (read from the file when fine-tuning).
        n_epochs, learning_rate, weight_decay, batch_size, SGD: optimiser
            settings of ``train_seg`` (AdamW unless ``SGD``).
        nimg_per_epoch: images drawn per epoch; None draws
            ``max(batch_size, number of training images)``, so one training
            image still fills a batch with differently augmented crops.
        bsize: side of the square training crops.
        rescale: rescale training images so objects have ``diam_mean``.
        min_train_masks: images with fewer objects are left out of training.
        channels: Cellpose's ``[cytoplasm, nucleus]`` channels; ``(0, 0)`` is grayscale.
        diameter: object diameter for prediction; None uses the mean diameter
            of the training objects, recorded in the weights.
        flow_threshold, cellprob_threshold, min_size, augment, eval_batch_size:
            ``CellposeModel.eval`` settings.
        preprocess: cellbench preprocessing before Cellpose's own normalisation.
        flatten: how overlapping training annotations become label images.
        threads: torch CPU threads for training and prediction; 0 leaves torch's default (one per
            core). The count changes the trained weights (see ``torch_threads``): the demo names 2.
    """

    pretrained: str | None = None
    pretrained_model: str | None = None
    diam_mean: float = 30.0
    n_epochs: int = 100
    learning_rate: float = 0.005
    weight_decay: float = 1e-5
    batch_size: int = 8
    SGD: bool = False
    nimg_per_epoch: int | None = None
    bsize: int = 224
    rescale: bool = True
    min_train_masks: int = 5
    channels: tuple[int, int] = (0, 0)
    diameter: float | None = None
    flow_threshold: float = 0.4
    cellprob_threshold: float = 0.0
    min_size: int = 15
    augment: bool = False
    eval_batch_size: int = 8
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    flatten: str = "priority-last"
    threads: int = 0

    def __post_init__(self) -> None:
        policy_from_name(self.flatten)
        if self.n_epochs < 1 or self.batch_size < 1 or self.bsize < 16:
            raise ValueError(f"need n_epochs >= 1, batch_size >= 1, bsize >= 16; got {self.n_epochs}, "
                             f"{self.batch_size}, {self.bsize}")
        check_threads(self.threads)
        if len(self.channels) != 2:
            raise ValueError(f"channels must be two integers, got {self.channels!r}")
        if self.pretrained and self.pretrained_model:
            raise ValueError("give pretrained (a registry name or a file) or pretrained_model (a file), not both")


def read_cellpose_weights(path: str | Path) -> dict:
    """The state dict of a Cellpose 3 model file, read safely (``weights_only=True``).

    Raises :class:`DataError` naming the file when it is missing, not a torch
    file, not a state dict of tensors, or a Cellpose 4 (Cellpose-SAM) file.
    """
    path = Path(path)
    state = read_state_dict(path, what="Cellpose model file")
    if "output.2.weight" not in state:
        raise DataError("not a Cellpose 3 model file (no Cellpose network state dict)", path=path)
    if "W2" in state:
        raise DataError("this is a Cellpose 4 (Cellpose-SAM) model file; the cellpose method uses Cellpose 3",
                        path=path)
    return state


#: What a size model's pickle may hold: numpy arrays, dtypes and scalars (numpy 1 or 2 module names).
_SIZE_MODEL_CLASSES = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numpy", "ndarray"),
                       ("numpy", "dtype")}


def read_size_model(path: str | Path) -> dict:
    """Cellpose's size model (``size_*.npy``, a pickled dict of arrays), read without running pickled code.

    ``cellpose.models.SizeModel`` opens it with ``np.load(allow_pickle=True)``,
    which would run whatever a tampered file holds; here only numpy arrays,
    dtypes and numbers are let through, and the dict must have the regression's keys.
    """
    import importlib
    import pickle

    class ArraysOnly(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module.rsplit(".", 1)[-1], name) not in _SIZE_MODEL_CLASSES or not module.startswith("numpy"):
                raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a size model")
            modern = module.replace("numpy.core", "numpy._core")  # numpy 2 name, no deprecation warning
            try:
                return getattr(importlib.import_module(modern), name)
            except ImportError:
                return getattr(importlib.import_module(module), name)

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(fh)
            params = ArraysOnly(fh).load().item() if dtype.hasobject else None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, AttributeError) as exc:
        raise DataError(f"not a readable Cellpose size model ({type(exc).__name__}: {exc})", path=path) from exc
    if not isinstance(params, dict) or not {"A", "smean", "diam_mean", "ymean"} <= set(params):
        raise DataError("not a Cellpose size model (no A, smean, diam_mean, ymean)", path=path)
    return params


@contextlib.contextmanager
def _epoch_progress(progress: ProgressFactory | None, n_epochs: int) -> Iterator[None]:
    """Advance a progress bar from the epoch lines ``train_seg`` logs (every 10 epochs)."""
    if progress is None:
        yield
        return
    ticks = iter(progress(range(n_epochs), desc="cellpose training", unit="epoch"))
    done = [0]
    logger = logging.getLogger("cellpose.train")
    shown = logger.getEffectiveLevel()  # what the user's logging set-up lets through

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = _EPOCH_LINE.match(record.getMessage())
            if found:
                for _ in range(int(found.group(1)) + 1 - done[0]):
                    next(ticks, None)
                done[0] = max(done[0], int(found.group(1)) + 1)
            if record.levelno >= shown and logger.parent is not None:
                logger.parent.handle(record)  # pass on what would have been shown anyway

    handler, old_level, old_propagate = Handler(level=logging.INFO), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # the epoch lines are INFO
    logger.propagate = False
    try:
        yield
        for _ in range(n_epochs - done[0]):
            next(ticks, None)
        next(ticks, None)  # let the bar close
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


#: Training flows already computed in this process, by device and label image, the least recently used
#: dropped beyond ``_FLOWS_KEPT_BYTES`` (a 2592 x 1944 Glioma C6 image's flows are 80 MB).
_FLOWS: OrderedDict[tuple, np.ndarray] = OrderedDict()
_FLOWS_KEPT_BYTES = 512 * 2**20


def training_flows(labels: Sequence[np.ndarray], device: Any) -> list[np.ndarray]:
    """Cellpose's training targets of ``labels``: per image [labels renumbered, cell, flow y, flow x], exactly what
    ``train_seg`` makes of label images (``dynamics.labels_to_flows``), computed once per label image in a process
    (up to ``_FLOWS_KEPT_BYTES`` of them).

    ``train_seg`` would compute them anew for every training, and a run trains the same images once per seed;
    given these it takes them as precomputed. Each call returns copies, so no training can change the cache.
    """
    from cellpose import dynamics

    out = []
    for lab in labels:
        lab = np.ascontiguousarray(lab)
        key = (str(device), lab.shape, lab.dtype.str, bytes_digest(lab.tobytes()))
        if key not in _FLOWS:
            _FLOWS[key] = dynamics.labels_to_flows([lab.copy()], device=device)[0]
            while len(_FLOWS) > 1 and sum(f.nbytes for f in _FLOWS.values()) > _FLOWS_KEPT_BYTES:
                _FLOWS.popitem(last=False)
        _FLOWS.move_to_end(key)
        out.append(_FLOWS[key].copy())
    return out


class CellposeMethod(Method):
    """Cellpose 3: train from scratch or fine-tune a given model file; predict with ``eval``."""

    name = "cellpose"
    version = "3"
    description = "Cellpose 3 (cyto3 family): from scratch, fine-tuned, or zero-shot from pretrained weights"
    requires = ("torch", "cellpose")
    extra = "cellpose"
    Config = CellposeConfig
    #: Whole images: Cellpose normalises the whole image and tiles inside ``eval`` itself.
    default_tiling = TileConfig(tile=0)
    #: ``cpu``: the demo's setting for cells ~75 px across: 80 epochs of 8 crops of 96 px at diam_mean 30
    #: (a 224 px crop, Cellpose's default, costs ~5x a 96 px one). For nuclei use diam_mean 12 on 64 px
    #: crops (examples/configs/dsb/cellpose.yaml).
    presets = {"cpu": {"bsize": 96, "n_epochs": 80, "nimg_per_epoch": 8, "min_train_masks": 1}}

    def __init__(self, config: CellposeConfig | None = None) -> None:
        super().__init__(config)
        self._model: Any = None
        self._size_model: dict | None = None  # a pretrained model's size regression, used zero-shot

    def _pretrained(self) -> tuple[dict, float | None, Path | None]:
        """The ``pretrained`` weights' state dict, the diam_mean they imply and their size model (None: none)."""
        from cellbench.pretrained import find_pretrained, resolve_pretrained

        cfg = self.config
        path = resolve_pretrained(cfg.pretrained, method="cellpose", progress=sys.stderr.isatty())
        entry = None if Path(cfg.pretrained).expanduser().exists() else find_pretrained(cfg.pretrained,
                                                                                        method="cellpose")
        if entry is None:
            return read_cellpose_weights(path), None, None
        size = path.parent / entry.files[1].file_name if len(entry.files) > 1 else None
        return read_cellpose_weights(path), entry.settings.get("diam_mean"), size

    # -- building ---------------------------------------------------------------
    def _new_model(self, state: dict | None, *, diam_mean: float | None = None) -> Any:
        """A ``CellposeModel`` on CPU (or GPU when torch has one), random or holding ``state``.

        ``diam_mean`` overrides the file's, as Cellpose does for its built-in
        models (nuclei: 17), whose older files may not record it at all.
        """
        import torch
        from cellpose import models

        if state is not None:
            state = dict(state)
            if diam_mean is None:
                diam_mean = float(state["diam_mean"].reshape(-1)[0]) if "diam_mean" in state else self.config.diam_mean
            state["diam_mean"] = torch.full((1,), float(diam_mean))
            state.setdefault("diam_labels", torch.full((1,), float(diam_mean)))
        diam_mean = float(diam_mean if diam_mean is not None else self.config.diam_mean)
        # mkldnn=False: Cellpose's MKL-DNN inference converts the weights to opaque tensors that cannot be saved
        model = models.CellposeModel(gpu=torch.cuda.is_available(), pretrained_model=False, model_type=None,
                                     diam_mean=diam_mean, mkldnn=False)
        if state is not None:
            try:
                torch.nn.Module.load_state_dict(model.net, state, strict=True)
            except RuntimeError as exc:
                raise DataError(f"weights do not fit the Cellpose 3 network ({exc})") from exc
            model.diam_mean = float(model.net.diam_mean.item())
            model.diam_labels = float(model.net.diam_labels.item())
        return model

    def _arrays(self, samples: Sequence[Sample]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        policy = policy_from_name(self.config.flatten)
        images = [preprocess(s.load_image(), self.config.preprocess) for s in samples]
        labels = [flatten(s.instances, policy).labels.astype(np.int32) for s in samples]
        return images, labels

    # -- the interface -------------------------------------------------------------
    @on_config_threads
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,  # not resumable: accepted and ignored
    ) -> TrainHistory:
        """Run ``cellpose.train.train_seg``; validation images give the test loss and the F1 at IoU 0.5."""
        from cellpose import train as cp_train

        if not train:
            raise DataError("cellpose: no training images")
        cfg = self.config
        state = read_cellpose_weights(cfg.pretrained_model) if cfg.pretrained_model else None
        diam_mean = None
        if cfg.pretrained:
            state, diam_mean, _ = self._pretrained()
        seed_torch(seed)
        self._model = self._new_model(state, diam_mean=diam_mean)
        self._size_model = None  # a fine-tuned model predicts at its training objects' diameter
        images, labels = self._arrays(train)
        if all(len(np.unique(lab)) - 1 < cfg.min_train_masks for lab in labels):
            raise DataError(f"cellpose: no training image has at least min_train_masks={cfg.min_train_masks} "
                            f"objects; lower min_train_masks in the config")
        test_images, test_labels = self._arrays(valid) if valid else (None, None)
        device = self._model.net.device
        labels = training_flows(labels, device)
        test_labels = training_flows(test_labels, device) if valid else None
        nimg = cfg.nimg_per_epoch or max(cfg.batch_size, len(images))
        channel_axis = -1 if images[0].ndim == 3 else None
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cellbench-cellpose-") as scratch, \
                _epoch_progress(progress, cfg.n_epochs):
            _, train_losses, test_losses = cp_train.train_seg(
                self._model.net, train_data=images, train_labels=labels,
                test_data=test_images, test_labels=test_labels, load_files=False,
                batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, n_epochs=cfg.n_epochs,
                weight_decay=cfg.weight_decay, SGD=cfg.SGD, channels=list(cfg.channels),
                channel_axis=channel_axis, normalize=True, save_path=scratch, save_every=10**9,
                nimg_per_epoch=nimg, rescale=cfg.rescale, bsize=cfg.bsize,
                min_train_masks=cfg.min_train_masks, model_name="cellbench",
            )
        wall = time.perf_counter() - start
        self._model.diam_labels = float(self._model.net.diam_labels.item())
        val = None
        if valid:
            val = validation_f1(valid, lambda image: self._labels(image)[0], flatten_policy=cfg.flatten)
        epochs = []
        for k, loss in enumerate(train_losses):
            extra = {"test_loss": float(test_losses[k])} if valid and (k == 5 or k % 10 == 0) else {}
            last = k == len(train_losses) - 1
            epochs.append(EpochRecord(epoch=k, loss=float(loss), val_score=val if last else None, extra=extra))
        return TrainHistory(
            epochs=tuple(epochs), val_metric="f1@0.5" if valid else None, best_epoch=len(epochs) - 1,
            wall_s=wall,
            info={"diam_mean": float(self._model.diam_mean), "diam_labels": self._model.diam_labels,
                  "from": cfg.pretrained or cfg.pretrained_model or "scratch", "nimg_per_epoch": nimg,
                  "loss": "cellpose flow MSE + cellprob BCE (train_seg)"},
        )

    def _require_model(self) -> Any:
        if self._model is None:
            if not self.config.pretrained:
                raise DataError("cellpose: train or load weights before predicting (or set pretrained)")
            state, diam_mean, size = self._pretrained()  # zero-shot
            self._model = self._new_model(state, diam_mean=diam_mean)
            self._size_model = read_size_model(size) if size is not None else None
        return self._model

    def _estimated_diameter(self, x: np.ndarray) -> float | None:
        """The object diameter the pretrained size model estimates for ``x`` (zero-shot without ``diameter``)."""
        if self._size_model is None:
            return None
        from cellpose.models import SizeModel

        cfg = self.config
        sizer = SizeModel(cp_model=self._model)  # no file: the parameters were read safely above
        sizer.params, sizer.diam_mean = self._size_model, float(self._size_model["diam_mean"])
        with warnings.catch_warnings():  # no masks at the style's size: Cellpose then falls back to diam_mean
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            diameter, _ = sizer.eval(x, channels=list(cfg.channels), channel_axis=-1 if x.ndim == 3 else None,
                                     batch_size=cfg.eval_batch_size, normalize=True)
        return float(diameter)

    def _labels(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cellpose masks and cell probability (sigmoid of the cellprob map) of one image."""
        cfg = self.config
        model = self._require_model()
        x = preprocess(image, cfg.preprocess)
        diameter = cfg.diameter if cfg.diameter is not None else self._estimated_diameter(x)
        masks, flows, _ = model.eval(
            x, channels=list(cfg.channels), channel_axis=-1 if x.ndim == 3 else None,
            diameter=diameter, flow_threshold=cfg.flow_threshold,
            cellprob_threshold=cfg.cellprob_threshold, min_size=cfg.min_size, augment=cfg.augment,
            batch_size=cfg.eval_batch_size, normalize=True,
        )
        prob = 1.0 / (1.0 + np.exp(-np.asarray(flows[2], dtype=np.float64)))
        return np.asarray(masks).astype(np.int32), prob

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """Cellpose masks; each instance's score is its mean cell probability."""
        masks, prob = self._labels(image)
        found = InstanceSet.from_label_image(masks)
        scored = tuple(inst.replace(score=float(prob[inst.slices][inst.mask].mean())) for inst in found)
        return found.replace(instances=scored)

    def save_weights(self, folder: Path) -> None:
        self._require_model().net.save_model(str(Path(folder) / WEIGHTS_FILE))

    def load_weights(self, folder: Path) -> None:
        path = Path(folder) / WEIGHTS_FILE
        state = read_cellpose_weights(path)
        try:
            self._model = self._new_model(state)
        except DataError as exc:
            raise DataError(exc.problem, path=path) from exc
        self._size_model = None
