"""Ultralytics, kept offline and free of pickles: import, networks, checkpoints, training, detection.

* :func:`load_ultralytics` imports Ultralytics with everything that reaches
  the network turned off: ``YOLO_OFFLINE`` (its online check, update check
  and event sync), ``YOLO_AUTOINSTALL`` off (no pip installs at run time),
  the settings' sync and logging integrations off, and its settings folder
  (``YOLO_CONFIG_DIR``, unless the user set one) in cellbench's cache instead
  of the home folder. Ultralytics is AGPL-3.0; nothing else in cellbench
  imports it.
* Networks are built from Ultralytics' model yaml (``yolo11n-seg.yaml`` ...)
  and carry weights as state dicts. Ultralytics' own ``.pt`` files pickle the
  whole model, which runs code when loaded, so cellbench never loads them
  with pickle: a pretrained checkpoint goes through Ultralytics'
  restricted loader (``weights_only`` with its allow-list of model classes),
  and a cellbench model directory holds a plain state dict and the yaml.
* :func:`train_network` runs Ultralytics' own segmentation trainer (its
  augmentation, loss, optimiser and schedule) on a dataset written by
  :mod:`cellbench.methods.adapters.yolo.dataset`, starting from a given state dict.
* :func:`detect` runs Ultralytics' predictor (letterbox, network, NMS) and
  makes each instance's mask at image resolution inside its own box, so
  memory grows with the instances' area, not with their number times the
  image (Ultralytics' ``retina_masks`` holds N x H x W).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import Instance

__all__ = ["Detection", "build_network", "checkpoint_state", "detect", "load_ultralytics", "make_predictor",
           "train_network", "transfer_state"]

#: Ultralytics settings that start logging integrations (some send data to their services).
_INTEGRATIONS = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "vscode_msg",
                 "openvino_msg")


def _config_dir() -> Path:
    from cellbench.remote import default_cache_dir

    return default_cache_dir() / "ultralytics"


@functools.lru_cache(maxsize=1)
def load_ultralytics() -> Any:
    """The ``ultralytics`` module, imported offline with its settings in cellbench's cache.

    The environment is set before the import because Ultralytics reads it
    then (its online check runs at import time).
    """
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    if not os.environ.get("YOLO_CONFIG_DIR"):
        folder = _config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(folder)
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise DataError(f"method 'yolo' needs ultralytics ({exc}); pip install 'cellbench[yolo]' "
                        "(Ultralytics is AGPL-3.0)") from exc
    off = {k: False for k in _INTEGRATIONS if k in SETTINGS and SETTINGS[k] is not False}
    if off:
        SETTINGS.update(off)
    return ultralytics


@contextlib.contextmanager
def _no_font_download() -> Iterator[None]:
    """Ultralytics' dataset check fetches a font for plots (off here) when none is installed; skip it."""
    import ultralytics.data.utils as data_utils

    saved = data_utils.check_font
    data_utils.check_font = lambda *args, **kwargs: None
    try:
        yield
    finally:
        data_utils.check_font = saved


@contextlib.contextmanager
def _torch_settings_kept() -> Iterator[None]:
    """Ultralytics changes process-wide torch settings (CPU threads, deterministic algorithms) for its
    own runs; give the rest of the process its settings back afterwards."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def build_network(cfg: str | dict, classes: tuple[str, ...]) -> Any:
    """An Ultralytics segmentation network from a model yaml name (``yolo11n-seg.yaml``) or its yaml dict,
    randomly initialised, with ``len(classes)`` classes and three input channels.

    A yaml dict must pass :func:`~cellbench.methods.adapters.yolo.model_yaml.check_model_yaml` (only Ultralytics'
    layers, plain values): Ultralytics would look up any name it holds and evaluate its ``activation``.
    """
    from cellbench.methods.adapters.yolo.model_yaml import check_model_yaml

    if not isinstance(cfg, str):
        cfg = check_model_yaml(cfg)
    load_ultralytics()
    from ultralytics.nn.tasks import SegmentationModel

    try:
        model = SegmentationModel(cfg, nc=len(classes), ch=3, verbose=False)
    except (FileNotFoundError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"cannot build the YOLO network from {cfg if isinstance(cfg, str) else 'its yaml'} "
                        f"({type(exc).__name__}: {exc})") from exc
    model.names = dict(enumerate(classes))
    return model


def checkpoint_state(path: str | Path) -> tuple[dict, dict]:
    """(state dict, model yaml) of an Ultralytics ``.pt`` checkpoint, read without running pickled code.

    Ultralytics' restricted loader (``torch.load(weights_only=True)`` with an
    allow-list of Ultralytics and torch model classes) reads it; a file that
    needs anything else is refused with a DataError.
    """
    load_ultralytics()
    import torch
    from ultralytics.nn.tasks import torch_safe_load

    path = Path(path)
    if not path.is_file():
        raise DataError("YOLO checkpoint not found", path=path)
    if path.suffix != ".pt":
        raise DataError("a YOLO checkpoint is an Ultralytics .pt file", path=path)
    try:
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as exc:  # Ultralytics raises TypeError, torch UnpicklingError / RuntimeError: all "unreadable"
        raise DataError(f"not a YOLO checkpoint cellbench can read safely ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})", path=path) from exc
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, torch.nn.Module) or not isinstance(getattr(model, "yaml", None), dict):
        raise DataError("the checkpoint holds no Ultralytics model", path=path)
    return model.float().state_dict(), dict(model.yaml)


def transfer_state(model: Any, state: dict, *, source: str | Path) -> dict:
    """Copy every tensor of ``state`` whose name and shape fit ``model`` (Ultralytics' own transfer rule:
    a checkpoint with other classes keeps all but the class-specific head layers); what was taken."""
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise DataError("no weight of the checkpoint fits this YOLO network (another model size?)", path=source)
    model.load_state_dict(fits, strict=False)
    return {"from": str(source), "transferred": len(fits), "of": len(own)}


def _trainer_class() -> type:
    """Ultralytics' segmentation trainer whose network starts from ``start_state`` (not from a pickle)."""
    from ultralytics.models.yolo.segment import SegmentationTrainer

    class StateDictTrainer(SegmentationTrainer):
        start_state: dict | None = None
        transferred: dict | None = None

        def get_model(self, cfg=None, weights=None, verbose=True):  # noqa: ARG002 - weights come as a state dict
            model = super().get_model(cfg=cfg, weights=None, verbose=False)
            if self.start_state is not None:
                self.transferred = transfer_state(model, self.start_state, source=self.start_source)
            return model

    return StateDictTrainer


def train_network(
    *,
    yaml_name: str,
    data: Path,
    run_dir: Path,
    args: dict,
    start: tuple[dict, str] | None,
    on_epoch: Callable[[int, dict, dict], None],
) -> tuple[dict, dict, dict]:
    """Train with Ultralytics' trainer; (state dict of the kept weights, model yaml, transfer record).

    ``args`` are Ultralytics training arguments (epochs, imgsz, ...); ``start`` a state dict and its
    source to start from; ``on_epoch(epoch, losses, metrics)`` is called after each epoch's validation.
    The kept weights are Ultralytics' choice: the EMA weights of the best epoch by its fitness
    (validation mAP), or of the last epoch without validation. Its checkpoints stay in ``run_dir``.
    """
    load_ultralytics()
    overrides = {**args, "model": yaml_name, "data": str(data), "task": "segment", "mode": "train",
                 "project": str(run_dir), "name": "train", "exist_ok": True, "pretrained": False,
                 "plots": False, "save": True, "resume": False}
    pending: dict = {}

    def epoch_end(t: Any) -> None:  # after the training batches of an epoch
        pending["losses"] = {str(k): float(v) for k, v in (t.tloss or {}).items()}
        pending["epoch"] = int(t.epoch)

    def fit_end(t: Any) -> None:  # after validation; Ultralytics calls it once more for the final evaluation
        if "losses" not in pending:
            return
        metrics = {str(k): float(v) for k, v in (t.metrics or {}).items() if isinstance(v, (int, float))}
        if t.fitness is not None:
            metrics["fitness"] = float(t.fitness)
        on_epoch(pending.pop("epoch"), pending.pop("losses"), metrics)

    # the trainer checks the dataset (and the font) when it is made
    with _torch_settings_kept(), _no_font_download():
        trainer = _trainer_class()(overrides=overrides)
        trainer.start_state = start[0] if start else None
        trainer.start_source = start[1] if start else None
        trainer.add_callback("on_train_epoch_end", epoch_end)
        trainer.add_callback("on_fit_epoch_end", fit_end)
        trainer.train()
    best = trainer.best if trainer.best.exists() else trainer.last
    if not best.exists():
        raise DataError("Ultralytics training wrote no checkpoint", path=trainer.wdir)
    state, yaml_dict = checkpoint_state(best)
    return state, yaml_dict, dict(trainer.transferred or {})


@dataclass(frozen=True)
class Detection:
    """One detected instance: mask (in image pixels), class index, score."""

    instance: Instance
    label: int


def make_predictor(model: Any, args: dict) -> Any:
    """Ultralytics' segmentation predictor around ``model`` (an nn.Module), whose results are
    :class:`Detection` lists instead of Ultralytics ``Results``."""
    load_ultralytics()
    from ultralytics.models.yolo.segment import SegmentationPredictor
    from ultralytics.utils import ops

    class BoxMaskPredictor(SegmentationPredictor):
        def construct_result(self, pred, img, orig_img, img_path, proto):  # noqa: ARG002
            found = _Found([])
            if pred.shape[0]:
                boxes = ops.scale_boxes(img.shape[2:], pred[:, :4].clone(), orig_img.shape)
                found.detections = _paste_masks(proto, pred[:, 6:], pred[:, 4], pred[:, 5], boxes,
                                                tuple(img.shape[2:]), tuple(orig_img.shape[:2]))
            return found

    overrides = {**args, "task": "segment", "mode": "predict", "save": False, "verbose": False, "batch": 1,
                 "rect": True, "retina_masks": False, "show": False}
    predictor = BoxMaskPredictor(overrides=overrides)
    with _torch_settings_kept():
        predictor.setup_model(model=model, verbose=False)
    return predictor


@dataclass
class _Found:
    """What the predictor yields per image (it sets ``speed`` on it)."""

    detections: list
    speed: dict | None = None


def _paste_masks(protos: Any, coefs: Any, scores: Any, labels: Any, boxes: Any, input_shape: tuple[int, int],
                 image_shape: tuple[int, int]) -> list[Detection]:
    """Each detection's mask at image resolution inside its box, best score first.

    The mask logits (prototype maps weighted by the detection's coefficients)
    are sampled bilinearly at the centres of the image pixels in the box, the
    letterbox undone as Ultralytics' ``scale_masks`` does; a pixel is in the
    mask where the logit is above 0, and only pixels inside the box count (its
    ``crop_mask``).
    """
    import torch
    import torch.nn.functional as F

    nm, mh, mw = protos.shape
    in_h, in_w = input_shape
    h0, w0 = image_shape
    gain = min(in_h / h0, in_w / w0)
    new_h, new_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
    top, left = round((in_h - new_h) / 2 - 0.1), round((in_w - new_w) / 2 - 0.1)
    flat = protos.float().reshape(nm, -1)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    out = []
    for k in order:
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        c0, c1 = max(0, math.ceil(x0)), min(w0, math.ceil(x1))
        r0, r1 = max(0, math.ceil(y0)), min(h0, math.ceil(y1))
        if c1 <= c0 or r1 <= r0:
            continue
        logits = (coefs[k].float() @ flat).reshape(1, 1, mh, mw)
        # image pixel centre -> network input pixel -> [-1, 1] over the prototype map (align_corners=False)
        ys = (top + (torch.arange(r0, r1, dtype=torch.float32) + 0.5) * new_h / h0) / in_h * 2 - 1
        xs = (left + (torch.arange(c0, c1, dtype=torch.float32) + 0.5) * new_w / w0) / in_w * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None].to(logits.device)
        inside = (F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0] > 0)
        mask = inside.cpu().numpy()
        if mask.any():
            inst = Instance.from_mask(mask, offset=(r0, c0), score=float(scores[k]))
            out.append(Detection(inst, int(labels[k])))
    return out


def detect(predictor: Any, image_bgr: np.ndarray) -> list[Detection]:
    """Detections in one H x W x 3 uint8 BGR image (Ultralytics' channel order for arrays)."""
    import torch

    with torch.inference_mode():
        results = list(predictor(source=image_bgr, stream=False))
    return results[0].detections if results else []
