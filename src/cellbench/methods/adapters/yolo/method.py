"""``yolo``: Ultralytics YOLO11-seg, trained as the Glioma C6 paper trained it.

The Glioma C6 paper's YOLOv11 row: "the YOLOv11l (large) model with the
default parameters ... trained for 395 epochs in multi-class regime ...
images for training were resized to 1024 x 1024 ... confidence threshold
0.25". YOLO11-seg predicts one mask per detected box, so it trains on the
overlapping ground truth as annotated ("no such conversion was required")
and predicts overlapping instances, and it classifies each box, so ONE model
learns every class of a task (``supports_classes``).

* Data: the training samples are written in Ultralytics' segmentation layout
  (:mod:`cellbench.methods.adapters.yolo.dataset`), one polygon per instance, overlaps
  kept, after cellbench's preprocessing (percentile normalisation) as 8-bit
  RGB images.
* Training: Ultralytics' own trainer (its mosaic and other augmentation,
  loss, ``optimizer`` choice and schedule, early stopping after ``patience``
  epochs, EMA weights; the best epoch by its validation fitness is kept when
  validation images are given). Each whole image is resized so its long side
  is ``imgsz``, as in the paper.
* Weights: from scratch (the model yaml of ``model_size``) or ``pretrained``:
  a file or a registry name (``yolo/yolo11l-seg``: Ultralytics' COCO weights
  through :mod:`cellbench.pretrained`, checksum recorded on first use). Only
  tensors whose name and shape fit are taken (the class-specific head layers
  of a COCO checkpoint are not), Ultralytics' own transfer rule.
* Prediction: detections with score >= ``conf`` after NMS at ``iou``, up to
  ``max_det``; scores are the detection scores, classes the detected classes.
  Whole images go in, letterboxed to ``imgsz`` as in training (so the default
  tiling is none), and masks come out at image resolution.
* Offline: nothing is fetched at run time (:mod:`cellbench.methods.adapters.yolo.runtime`).
* Model directory: a state dict (``yolo.pt``, read with ``weights_only``) and
  the network's yaml (``yolo.json``); never an Ultralytics pickle. The yaml is
  checked to name only Ultralytics' layers before Ultralytics builds it
  (:mod:`cellbench.methods.adapters.yolo.model_yaml`): Ultralytics looks module names
  up in its globals and evaluates ``activation``.

Ultralytics is AGPL-3.0 (``licence``): the ``yolo`` extra is not part of
``cellbench[dev]`` or ``[all]``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.preprocess import PreprocessConfig
from cellbench.methods.tiling import TileConfig
from cellbench.methods.torch_file import read_state_dict
from cellbench.methods.adapters.yolo import MODEL_SIZES
from cellbench.methods.adapters.yolo.dataset import to_uint8_rgb, write_dataset

__all__ = ["YOLOConfig", "YOLOMethod"]

WEIGHTS_FILE = "yolo.pt"
INFO_FILE = "yolo.json"
#: The Ultralytics validation metric recorded as each epoch's ``val_score``.
VAL_METRIC = "metrics/mAP50-95(M)"


@dataclass(frozen=True)
class YOLOConfig:
    """YOLO11-seg settings (Ultralytics' argument names where it has one).

    Attributes:
        model_size: ``n``, ``s``, ``m``, ``l`` (the paper's) or ``x``: ``yolo11{size}-seg``.
        pretrained: weights to start from: an Ultralytics ``.pt`` file, or a registry name
            (``yolo/yolo11l-seg``; ``cellbench models list``); None trains from scratch.
        imgsz: the long side images are resized to, in training and prediction (1024 in the paper).
        epochs: training epochs (395 in the paper).
        batch: images per step.
        optimizer: Ultralytics' optimiser (``auto`` picks SGD or AdamW and its learning rate by the
            number of steps, ignoring ``lr0``; ``SGD``, ``AdamW``, ``Adam`` ... use ``lr0``).
        lr0: initial learning rate (when ``optimizer`` is not ``auto``).
        patience: stop after this many epochs without a better validation fitness.
        train_args: further Ultralytics training arguments, as given (e.g. ``{"mosaic": 0.5}``).
        conf: detections below this score are dropped (0.25, the paper's and Ultralytics' default).
        iou: NMS IoU threshold.
        agnostic_nms: NMS across classes (Ultralytics suppresses within a class by default).
        max_det: at most this many instances per image.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda:N``.
        amp: mixed precision on a GPU. Off by default: Ultralytics checks AMP by downloading a model.
        preprocess: cellbench preprocessing before the 8-bit conversion (percentile normalisation).
    """

    model_size: str = "l"
    pretrained: str | None = None
    imgsz: int = 1024
    epochs: int = 395
    batch: int = 16
    optimizer: str = "auto"
    lr0: float = 0.01
    patience: int = 100
    train_args: dict = field(default_factory=dict)
    conf: float = 0.25
    iou: float = 0.7
    agnostic_nms: bool = False
    max_det: int = 3000
    device: str = "auto"
    amp: bool = False
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        if self.model_size not in MODEL_SIZES:
            raise ValueError(f"model_size must be one of {list(MODEL_SIZES)}, got {self.model_size!r}")
        if self.imgsz < 32 or self.epochs < 1 or self.batch < 1 or self.patience < 1 or self.max_det < 1:
            raise ValueError(f"need imgsz >= 32, epochs, batch, patience, max_det >= 1; got {self.imgsz}, "
                             f"{self.epochs}, {self.batch}, {self.patience}, {self.max_det}")
        if not 0.0 <= self.conf <= 1.0 or not 0.0 <= self.iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got {self.conf}, {self.iou}")
        reserved = sorted(set(self.train_args) & _SET_BY_CELLBENCH)
        if reserved:
            raise ValueError(f"train_args may not set {reserved}: cellbench sets them (use the config fields)")

    @property
    def yaml_name(self) -> str:
        return f"yolo11{self.model_size}-seg.yaml"


#: Ultralytics arguments cellbench sets from its own fields or needs fixed (determinism, offline, outputs).
_SET_BY_CELLBENCH = frozenset({
    "model", "data", "task", "mode", "epochs", "imgsz", "batch", "optimizer", "lr0", "patience", "seed",
    "deterministic", "workers", "device", "amp", "plots", "project", "name", "exist_ok", "pretrained", "save",
    "resume", "val",
})


def resolve_weights(name_or_path: str) -> Path:
    """A pretrained checkpoint: an existing path, else a name of :mod:`cellbench.pretrained`."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    from cellbench.pretrained import resolve_pretrained

    return Path(resolve_pretrained(name_or_path, method="yolo"))


def _ultralytics_device(name: str) -> str:
    from cellbench.methods.device import torch_device

    device = torch_device(name)
    return "cpu" if device.type == "cpu" else str(device.index or 0)


class YOLOMethod(Method):
    """Ultralytics YOLO11-seg: overlapping, classified instances; one model for all classes."""

    name = "yolo"
    version = "1"
    description = "Ultralytics YOLO11-seg (Glioma C6 paper): overlapping instances, several classes in one model"
    requires = ("torch", "ultralytics")
    extra = "yolo"
    licence: ClassVar[str] = "AGPL-3.0 (Ultralytics)"
    Config = YOLOConfig
    #: One model learns every class of a task (the runner trains single-class methods once per class).
    supports_classes: ClassVar[bool] = True
    #: Ultralytics resizes each whole image to ``imgsz`` in training: prediction takes whole images too.
    default_tiling = TileConfig(tile=0)
    presets = {
        # The Glioma C6 paper's run: YOLO11l, 1024 px, 395 epochs, from Ultralytics' COCO weights (its default).
        "paper": {"model_size": "l", "imgsz": 1024, "epochs": 395, "pretrained": "yolo/yolo11l-seg"},
        # YOLO11n at 640 px for 50 epochs: trains in minutes on a CPU.
        "cpu": {"model_size": "n", "imgsz": 640, "epochs": 50, "batch": 4},
    }

    def __init__(self, config: YOLOConfig | None = None) -> None:
        super().__init__(config)
        self._model: Any = None
        self._state: dict | None = None
        self._yaml: dict | None = None
        self._classes: tuple[str, ...] = ("cell",)
        self._weights_from: dict = {"from": "scratch"}
        self._predictor: Any = None

    # -- training ---------------------------------------------------------------
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,  # not resumable: accepted and ignored
    ) -> TrainHistory:
        """Fit with Ultralytics' trainer on ``train`` (all classes in one model; overlaps kept)."""
        from cellbench.methods.adapters.yolo.runtime import build_network, checkpoint_state, load_ultralytics, train_network

        if not train:
            raise DataError("yolo: no training images")
        classes = train[0].instances.classes
        for s in [*train[1:], *(valid or ())]:
            if s.instances.classes != classes:
                raise DataError(f"yolo: image {s.name!r} has classes {list(s.instances.classes)}, "
                                f"{train[0].name!r} has {list(classes)}")
        cfg = self.config
        ultralytics = load_ultralytics()
        start = None
        if cfg.pretrained:
            path = resolve_weights(cfg.pretrained)
            state, yaml_dict = checkpoint_state(path)
            if yaml_dict.get("scale") not in (None, cfg.model_size):
                raise DataError(f"pretrained weights are of model size {yaml_dict['scale']!r}, the config's "
                                f"model_size is {cfg.model_size!r}", path=path)
            start = (state, path)
        args = {**cfg.train_args, "epochs": cfg.epochs, "imgsz": cfg.imgsz, "batch": cfg.batch,
                "optimizer": cfg.optimizer, "lr0": cfg.lr0, "patience": cfg.patience, "seed": int(seed),
                "deterministic": True, "workers": 0, "device": _ultralytics_device(cfg.device), "amp": cfg.amp,
                "val": bool(valid)}
        epochs: list[EpochRecord] = []
        bar = iter(progress(range(cfg.epochs), desc="yolo training", unit="epoch")) if progress else None
        if bar is not None:
            next(bar, None)

        def on_epoch(epoch: int, losses: dict, metrics: dict) -> None:
            val = metrics.get(VAL_METRIC) if valid else None
            epochs.append(EpochRecord(epoch=epoch, loss=float(sum(losses.values())), val_score=val,
                                      extra={**losses, **metrics}))
            if bar is not None:
                next(bar, None)

        start_time = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="cellbench-yolo-") as tmp:
                data = write_dataset(Path(tmp) / "data", train, valid, classes, cfg.preprocess)
                state, yaml_dict, transferred = train_network(
                    yaml_name=cfg.yaml_name, data=data, run_dir=Path(tmp) / "runs", args=args, start=start,
                    on_epoch=on_epoch)
        except SyntaxError as exc:  # Ultralytics' answer to an unknown training argument
            raise DataError(f"yolo: Ultralytics refused the training arguments ({exc})") from exc
        for _ in range(cfg.epochs - len(epochs)):  # stopped early: finish the bar
            if bar is not None:
                next(bar, None)
        wall = time.perf_counter() - start_time
        model = build_network(yaml_dict, tuple(classes))
        model.load_state_dict(state, strict=True)
        self._set(model, state, yaml_dict, tuple(classes))
        self._weights_from = ({"from": "scratch"} if start is None
                              else {**transferred, "name": cfg.pretrained})
        fitness = [e.extra.get("fitness") for e in epochs]
        best = (int(np.nanargmax([np.nan if f is None else f for f in fitness]))
                if valid and any(f is not None for f in fitness) else len(epochs) - 1)
        return TrainHistory(
            epochs=tuple(epochs), val_metric="mask mAP50-95 (Ultralytics)" if valid else None,
            best_epoch=epochs[best].epoch if epochs else None, wall_s=wall,
            info={**self._weights_from, "classes": list(classes), "model": cfg.yaml_name,
                  "ultralytics_version": str(ultralytics.__version__),
                  "loss": "Ultralytics YOLO11-seg: box (CIoU) + seg (BCE) + cls (BCE) + dfl, each epoch's mean; "
                          "weights kept: EMA of the best epoch by Ultralytics fitness (last without validation)"},
        )

    def _set(self, model: Any, state: dict, yaml_dict: dict, classes: tuple[str, ...]) -> None:
        model.eval()
        self._model, self._state, self._yaml, self._classes = model, state, yaml_dict, classes
        self._predictor = None

    # -- prediction -------------------------------------------------------------
    def _require_predictor(self) -> Any:
        from cellbench.methods.adapters.yolo.runtime import make_predictor

        if self._state is None:
            raise DataError("yolo: train or load weights before predicting")
        if self._predictor is None:
            cfg = self.config
            self._predictor = make_predictor(self._model, {
                "imgsz": cfg.imgsz, "conf": cfg.conf, "iou": cfg.iou, "max_det": cfg.max_det,
                "agnostic_nms": cfg.agnostic_nms, "device": _ultralytics_device(cfg.device)})
        return self._predictor

    def predict(self, image: np.ndarray) -> InstanceSet:
        """Detected instances of one whole image, scored by the detector, overlaps and classes kept."""
        from cellbench.methods.adapters.yolo.runtime import detect

        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
        predictor = self._require_predictor()
        bgr = np.ascontiguousarray(to_uint8_rgb(image, self.config.preprocess)[..., ::-1])
        found = detect(predictor, bgr)
        instances = tuple(d.instance.replace(class_id=d.label) for d in found)
        return InstanceSet(shape=image.shape[:2], instances=instances, classes=self._classes)

    # -- weights ----------------------------------------------------------------
    def save_weights(self, folder: Path) -> None:
        """``yolo.pt`` (the network's state dict, no pickled objects) and ``yolo.json`` (its yaml, classes)."""
        import torch

        if self._state is None:
            raise DataError("yolo: nothing to save; train or load weights first")
        torch.save({k: v.detach().cpu().contiguous() for k, v in self._model.state_dict().items()},
                   Path(folder) / WEIGHTS_FILE)
        info = {"classes": list(self._classes), "model_size": self.config.model_size, "yaml": self._yaml,
                "weights": self._weights_from}
        (Path(folder) / INFO_FILE).write_text(json.dumps(info, indent=2))

    def load_weights(self, folder: Path) -> None:
        """Read ``yolo.json`` and ``yolo.pt``: the yaml checked to name only Ultralytics' layers and the
        weights to be tensors before Ultralytics builds anything (:mod:`.model_yaml`)."""
        from cellbench.methods.adapters.yolo.model_yaml import check_model_yaml
        from cellbench.methods.adapters.yolo.runtime import build_network

        info_path = Path(folder) / INFO_FILE
        try:
            info = json.loads(info_path.read_text())
            classes = info["classes"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"cannot read the YOLO network description ({exc})", path=info_path) from exc
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise DataError(f"classes must be a list of names, got {classes!r:.80}", path=info_path)
        classes = tuple(classes)
        yaml_dict = check_model_yaml(info.get("yaml"), path=info_path)
        if info.get("model_size") != self.config.model_size:
            raise DataError(f"weights are for model size {info.get('model_size')!r}, the config says "
                            f"{self.config.model_size!r}", path=info_path)
        path = Path(folder) / WEIGHTS_FILE
        state = read_state_dict(path, what="YOLO weights file")
        model = build_network(yaml_dict, classes)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise DataError(f"weights do not fit this YOLO network ({str(exc).splitlines()[0]})", path=path) from exc
        self._set(model, state, yaml_dict, classes)
        self._weights_from = dict(info.get("weights") or {})
