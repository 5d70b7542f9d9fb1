"""``mask2former``: Mask2Former (Hugging Face ``transformers``) trained on instances as they are annotated.

The 18-methods benchmark's Mask2Former row (Cheng et al. 2022, run with
MMDetection on a ResNet-50). Unlike a detector it has no boxes: a fixed set
of learned queries each predicts one mask and one class, matched one to one
to the annotated instances during training, so overlapping cells are two
targets like any others and come out as two instances; and its class scores
cover every class of a task, so ONE model learns them all
(``supports_classes``).

* Network: :mod:`.network`, ``Mask2FormerForUniversalSegmentation`` on
  ``backbone`` (:mod:`.backbones`: ``resnet50`` as the paper ran it,
  ``swin_t`` / ``swin_s``, ``swin_t_w48`` for CPUs), sizes from the config.
* Weights: from scratch, or ``pretrained``: a file path or a name of the
  pretrained-model registry (:mod:`cellbench.pretrained`): a whole
  Mask2Former in Hugging Face's layout (its class layer re-initialised for
  the task's classes) or an image classifier of the backbone
  (:mod:`.weights`). Nothing is ever downloaded by ``transformers``.
* Training: :mod:`.training`: random square crops (``crop_size``) with flips
  and 90-degree rotations, Hugging Face's Hungarian-matched mask BCE, dice and
  class losses on every decoder layer, Mask2Former's AdamW recipe.
* Prediction: :mod:`.inference`: Mask2Former's instance inference, (query,
  class) pairs ranked by class probability times mean mask probability, kept
  at ``score_threshold`` (the scores COCO metrics rank by), no suppression of
  overlaps. Whole images go through cellbench's tiling, by default in tiles
  of the training crop (:meth:`Mask2FormerMethod.tiling_defaults`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.methods.base import Method, ProgressFactory, TrainHistory
from cellbench.methods.checkpoint import train_fingerprint
from cellbench.methods.device import on_config_threads
from cellbench.methods.adapters.mask2former.backbones import BACKBONES
from cellbench.methods.adapters.mask2former.config import Mask2FormerConfig
from cellbench.methods.preprocess import preprocess
from cellbench.methods.seeding import seed_torch
from cellbench.methods.training import training_classes
from cellbench.methods.validation import tiled_overlap_f1

__all__ = ["Mask2FormerMethod"]

WEIGHTS_FILE = "mask2former.safetensors"
INFO_FILE = "mask2former.json"


class Mask2FormerMethod(Method):
    """Mask2Former: per-query masks and classes; overlapping instances; one model for all classes."""

    name = "mask2former"
    version = "1"
    description = (f"Mask2Former (Hugging Face transformers) on {', '.join(b for b in BACKBONES if b != 'tiny')} "
                   "(resnet50 as the 18-methods paper ran it): overlapping instances, several classes in one model")
    requires = ("torch", "transformers")
    extra = "mask2former"
    Config = Mask2FormerConfig
    #: One model learns every class of a task (the runner trains single-class methods once per class).
    supports_classes: ClassVar[bool] = True
    #: ``cpu``: Swin-T's depths at half width, 128-channel decoders with 3 + 5 layers, 256 px crops in 256 px
    #: tiles, 4096 loss points, the full rate on the backbone (it starts from scratch) and a longer warm-up.
    presets = {"cpu": {"backbone": "swin_t_w48", "hidden_dim": 128, "feature_size": 128, "encoder_layers": 3,
                       "decoder_layers": 6, "num_heads": 4, "dim_feedforward": 512, "encoder_feedforward_dim": 512,
                       "train_num_points": 4096, "crop_size": 256, "batch_size": 2, "epochs": 30,
                       "lr": 0.0002, "backbone_lr_factor": 1.0, "warmup_iters": 50,
                       "tiling": {"tile": 256, "overlap": 64}}}
    resumable = True

    def __init__(self, config: Mask2FormerConfig | None = None) -> None:
        super().__init__(config)
        self._model: Any = None
        self._classes: tuple[str, ...] = ("cell",)
        self._weights_from: dict = {"from": "scratch"}

    @classmethod
    def tiling_defaults(cls, config: Mask2FormerConfig | None = None) -> dict[str, int]:
        """Tiles of the training crop, a quarter of it as overlap: the network sees tiles of the size it
        trained on (its position encoding is normalised to the input's size, and its queries bound the
        instances per tile).

        >>> Mask2FormerMethod.tiling_defaults(Mask2FormerConfig(crop_size=256))
        {'tile': 256, 'overlap': 64}
        """
        crop = (config or cls.Config()).crop_size
        return {"tile": crop, "overlap": crop // 4}

    # -- building ---------------------------------------------------------------
    def _new_model(self, n_classes: int) -> Any:
        from cellbench.methods.adapters.mask2former.network import build_network

        return build_network(self.config, n_classes)

    def _input(self, image: np.ndarray) -> np.ndarray:
        from cellbench.methods.adapters.detection.targets import to_rgb

        return to_rgb(preprocess(image, self.config.preprocess))

    def _require_model(self) -> Any:
        if self._model is None:
            raise DataError("mask2former: train or load weights before predicting")
        return self._model

    # -- the interface -------------------------------------------------------------
    @on_config_threads
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,
    ) -> TrainHistory:
        """Fit on random crops of ``train`` (all classes in one model); keep the best validated epoch.
        With ``checkpoint_dir``, every epoch is saved there and a saved one continued."""
        from cellbench.methods.adapters.mask2former.training import train_mask2former
        from cellbench.methods.adapters.mask2former.weights import load_pretrained, resolve_pretrained

        classes = training_classes(self.name, train)
        cfg = self.config
        seed_torch(seed)
        rng = np.random.default_rng(seed)
        model = self._new_model(len(classes))
        self._classes = tuple(classes)
        self._weights_from = {"from": "scratch"}
        if cfg.pretrained:
            loaded = load_pretrained(model, resolve_pretrained(cfg.pretrained), backbone=cfg.backbone)
            self._weights_from = loaded | {"name": cfg.pretrained}
        self._model = model
        images = [self._input(s.load_image()) for s in train]
        history = train_mask2former(
            model, images, [s.instances for s in train], cfg, rng=rng,
            validate=(lambda: tiled_overlap_f1(self, valid)) if valid else None, checkpoint_dir=checkpoint_dir,
            fingerprint=train_fingerprint(self, train, valid, seed) if checkpoint_dir is not None else None,
            progress=progress)
        return dataclasses.replace(history, info={
            **self._weights_from, "classes": list(self._classes), **history.info,
            "loss": "Hungarian-matched mask BCE + dice + class cross-entropy on every decoder layer "
                    "(transformers Mask2Former)"})

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """The instances of one image (a tile), scored, overlaps and classes kept."""
        from cellbench.methods.adapters.mask2former.inference import segment

        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
        cfg = self.config
        found = segment(self._require_model(), self._input(image), scale=cfg.scale,
                        score_threshold=cfg.score_threshold, mask_threshold=cfg.mask_threshold,
                        max_instances=cfg.max_instances or cfg.num_queries)
        return InstanceSet(shape=image.shape[:2], instances=tuple(found), classes=self._classes)

    def save_weights(self, folder: Path) -> None:
        """``mask2former.safetensors`` (the network's state dict) and ``mask2former.json`` (classes, backbone,
        where the weights started from, the ``transformers`` version that named the tensors)."""
        from cellbench.methods.adapters.mask2former.weights import write_weights

        write_weights(self._require_model(), Path(folder) / WEIGHTS_FILE)
        info = {"classes": list(self._classes), "backbone": self.config.backbone, "weights": self._weights_from,
                "transformers": _transformers_version()}
        (Path(folder) / INFO_FILE).write_text(json.dumps(info, indent=2))

    def load_weights(self, folder: Path) -> None:
        from cellbench.methods.adapters.detection.weights import read_info
        from cellbench.methods.adapters.mask2former.weights import read_weights

        info, classes = read_info(Path(folder) / INFO_FILE, paper="Mask2Former", backbone=self.config.backbone)
        path = Path(folder) / WEIGHTS_FILE
        state = read_weights(path)
        model = self._new_model(len(classes))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            saved = info.get("transformers")
            hint = (f"; they were saved with transformers {saved}, this is {_transformers_version()}, whose "
                    "tensor names may differ" if saved and saved != _transformers_version() else "")
            raise DataError(f"weights do not fit this Mask2Former ({str(exc).splitlines()[0]}){hint}",
                            path=path) from exc
        model.eval()
        self._model, self._classes = model, classes
        self._weights_from = dict(info.get("weights") or {})


def _transformers_version() -> str:
    """The installed ``transformers`` version (its tensor names are what a saved model's weights hold)."""
    import transformers

    return str(transformers.__version__)
