"""``cellpose``: the Cellpose 3 package, trained and run the way its users do.

Training goes through ``cellpose.train.train_seg`` on a
``cellpose.models.CellposeModel``: from scratch (random initialisation, works
offline), or fine-tuned from a Cellpose 3 model file the user gives (the
Glioma C6 paper fine-tuned ``cyto3``; cellbench downloads nothing).
Prediction is ``CellposeModel.eval`` with its usual parameters (diameter,
flow and cellprob thresholds, minimum size).

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
import random
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.matching import match_labels, pooled
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.preprocess import PreprocessConfig, preprocess
from cellbench.methods.tiling import TileConfig

__all__ = ["CellposeConfig", "CellposeMethod", "WEIGHTS_FILE", "read_cellpose_weights"]

WEIGHTS_FILE = "cellpose_model.pth"
_EPOCH_LINE = re.compile(r"^(\d+), train_loss=")


@dataclass(frozen=True)
class CellposeConfig:
    """Cellpose training and prediction settings (names as in ``train_seg`` and ``eval``).

    Attributes:
        pretrained_model: path of a Cellpose 3 model file to fine-tune (e.g. a
            copy of ``cyto3``); None trains from scratch.
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
    """

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

    def __post_init__(self) -> None:
        policy_from_name(self.flatten)
        if self.n_epochs < 1 or self.batch_size < 1 or self.bsize < 16:
            raise ValueError(f"need n_epochs >= 1, batch_size >= 1, bsize >= 16; got {self.n_epochs}, "
                             f"{self.batch_size}, {self.bsize}")
        if len(self.channels) != 2:
            raise ValueError(f"channels must be two integers, got {self.channels!r}")


def read_cellpose_weights(path: str | Path) -> dict:
    """The state dict of a Cellpose 3 model file, read safely (``weights_only=True``).

    Raises :class:`DataError` naming the file when it is missing, not a torch
    file, or a Cellpose 4 (Cellpose-SAM) file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError("Cellpose model file not found", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same thing here
        raise DataError(f"not a readable torch weights file ({type(exc).__name__}: {exc})", path=path) from exc
    if not isinstance(state, dict) or "output.2.weight" not in state:
        raise DataError("not a Cellpose 3 model file (no Cellpose network state dict)", path=path)
    if "W2" in state:
        raise DataError("this is a Cellpose 4 (Cellpose-SAM) model file; the cellpose method uses Cellpose 3",
                        path=path)
    return state


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


class CellposeMethod(Method):
    """Cellpose 3: train from scratch or fine-tune a given model file; predict with ``eval``."""

    name = "cellpose"
    version = "3"
    description = "Cellpose 3 (cyto3 family): from scratch or fine-tuned from a given model file"
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

    # -- building ---------------------------------------------------------------
    def _new_model(self, state: dict | None) -> Any:
        """A ``CellposeModel`` on CPU (or GPU when torch has one), random or holding ``state``."""
        import torch
        from cellpose import models

        diam_mean = float(state["diam_mean"].reshape(-1)[0]) if state is not None else float(self.config.diam_mean)
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
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
    ) -> TrainHistory:
        """Run ``cellpose.train.train_seg``; validation images give the test loss and the F1 at IoU 0.5."""
        from cellpose import train as cp_train

        if not train:
            raise DataError("cellpose: no training images")
        cfg = self.config
        state = read_cellpose_weights(cfg.pretrained_model) if cfg.pretrained_model else None
        _seed_everything(seed)
        self._model = self._new_model(state)
        images, labels = self._arrays(train)
        if all(len(np.unique(lab)) - 1 < cfg.min_train_masks for lab in labels):
            raise DataError(f"cellpose: no training image has at least min_train_masks={cfg.min_train_masks} "
                            f"objects; lower min_train_masks in the config")
        test_images, test_labels = self._arrays(valid) if valid else (None, None)
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
            val = pooled(
                match_labels(flatten(s.instances, policy_from_name(cfg.flatten)).labels,
                             self._labels(s.load_image())[0], (0.5,))[0]
                for s in valid
            ).f1
        epochs = []
        for k, loss in enumerate(train_losses):
            extra = {"test_loss": float(test_losses[k])} if valid and (k == 5 or k % 10 == 0) else {}
            last = k == len(train_losses) - 1
            epochs.append(EpochRecord(epoch=k, loss=float(loss), val_score=val if last else None, extra=extra))
        return TrainHistory(
            epochs=tuple(epochs), val_metric="f1@0.5" if valid else None, best_epoch=len(epochs) - 1,
            wall_s=wall,
            info={"diam_mean": float(self._model.diam_mean), "diam_labels": self._model.diam_labels,
                  "from": cfg.pretrained_model or "scratch", "nimg_per_epoch": nimg,
                  "loss": "cellpose flow MSE + cellprob BCE (train_seg)"},
        )

    def _require_model(self) -> Any:
        if self._model is None:
            raise DataError("cellpose: train or load weights before predicting")
        return self._model

    def _labels(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cellpose masks and cell probability (sigmoid of the cellprob map) of one image."""
        cfg = self.config
        model = self._require_model()
        x = preprocess(image, cfg.preprocess)
        masks, flows, _ = model.eval(
            x, channels=list(cfg.channels), channel_axis=-1 if x.ndim == 3 else None,
            diameter=cfg.diameter, flow_threshold=cfg.flow_threshold,
            cellprob_threshold=cfg.cellprob_threshold, min_size=cfg.min_size, augment=cfg.augment,
            batch_size=cfg.eval_batch_size, normalize=True,
        )
        prob = 1.0 / (1.0 + np.exp(-np.asarray(flows[2], dtype=np.float64)))
        return np.asarray(masks).astype(np.int32), prob

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
