"""``nnunet``: nnU-Net v2 (``nnunetv2``) run as its users run it, behind cellbench's Method interface.

``train`` writes the samples as an nnU-Net raw dataset (:mod:`.raw`), plans
and preprocesses it, and trains the ``2d`` configuration on the CPU with the
trainer named in the config (nnU-Net ships short schedules:
``nnUNetTrainer_1epoch``, ``_5epochs``, ``_10epochs``, ``_20epochs``, ...), all in
a temporary nnU-Net work folder (:mod:`.run`). Validation images given to
``train`` become nnU-Net's fold 0 validation cases (a ``splits_final.json``);
without them nnU-Net trains fold ``all`` (every case trains and validates).
``predict`` runs nnU-Net's sliding-window predictor (Gaussian weighting,
mirroring) and turns the class probabilities into instances (:mod:`.instances`).

The model directory's ``weights/`` holds nnU-Net's trained-model folder::

    nnUNet_results/Dataset001_cellbench/<trainer>__nnUNetPlans__2d/
        plans.json  dataset.json  dataset_fingerprint.json
        fold_<f>/checkpoint_final.pth

where ``checkpoint_final.pth`` keeps only what inference needs (network
weights, trainer name, configuration, mirroring axes) as plain tensors and
values, so cellbench reads it with ``torch.load(weights_only=True)`` and
``nnUNetv2_predict_from_modelfolder`` reads it too. nnU-Net's raw and
preprocessed folders are training scratch and are not kept.

Loading checks the folder before nnU-Net reads any of it (:mod:`.model_folder`):
the weights are tensors, and every class, function and trainer the plans and
checkpoint name is one of cellbench's lists. nnU-Net's own predictor does
neither (it unpickles the checkpoint and imports what the files name), so a
model directory from elsewhere is safe to open with cellbench, not with
``nnUNetv2_predict_from_modelfolder``.

Instances: nnU-Net gives each pixel one class, so training labels are
flattened (``flatten`` policy, recorded in the model directory).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, flatten, policy_from_name
from cellbench.methods.base import EpochRecord, Method, ProgressFactory, TrainHistory
from cellbench.methods.device import check_threads, on_config_threads
from cellbench.methods.adapters.nnunet.instances import instances_from_semantic
from cellbench.methods.adapters.nnunet.model_folder import CHECKPOINT, TRAINERS
from cellbench.methods.adapters.nnunet.raw import DATASET_ID, DATASET_NAME, SPACING, nnunet_input, write_raw_dataset
from cellbench.methods.tiling import TileConfig
from cellbench.methods.validation import validation_f1
from cellbench.methods.seeding import seed_torch

__all__ = ["NnUNetConfig", "NnUNetMethod", "CHECKPOINT"]


@dataclass(frozen=True)
class NnUNetConfig:
    """nnU-Net settings.

    Attributes:
        trainer: nnU-Net trainer class name; the short schedules
            ``nnUNetTrainer_1epoch``, ``_5epochs``, ``_10epochs``, ``_20epochs``,
            ``_50epochs``, ... or ``nnUNetTrainer`` (1000 epochs).
        iterations_per_epoch, val_iterations_per_epoch: batches per epoch (nnU-Net: 250 and 50).
        batch_size: written into the plans over nnU-Net's planned batch size; None keeps it.
        gpu_memory_target_gb: the planner's memory target (nnU-Net: 8 GB); smaller plans a
            smaller patch and batch, which is what a CPU can train.
        target: ``boundary`` (background / interior / boundary) or ``foreground`` (background / cell).
        boundary_px: width of the boundary class inside each cell.
        tile_step_size, use_mirroring: nnU-Net's sliding-window prediction (0.5 and mirroring as nnU-Net).
        min_size: instances smaller than this (pixels) are dropped.
        flatten: how overlapping training annotations become label images.
        threads: torch CPU threads for planning, training and prediction; 0 leaves torch's default
            (one per core). The count changes the trained weights (see ``torch_threads``), so a
            config that should give the same scores on another machine names it.
    """

    trainer: str = "nnUNetTrainer_5epochs"
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    batch_size: int | None = None
    gpu_memory_target_gb: float | None = None
    target: Literal["boundary", "foreground"] = "boundary"
    boundary_px: int = 1
    tile_step_size: float = 0.5
    use_mirroring: bool = True
    min_size: int = 10
    flatten: str = "priority-last"
    threads: int = 0

    def __post_init__(self) -> None:
        policy_from_name(self.flatten)
        if self.trainer not in TRAINERS:
            raise ValueError(f"trainer must be nnUNetTrainer or one of its schedules (nnUNetTrainer_1epoch, "
                             f"_5epochs, _10epochs, ...: {sorted(TRAINERS)}), got {self.trainer!r}")
        if self.target not in ("boundary", "foreground"):
            raise ValueError(f"target must be 'boundary' or 'foreground', got {self.target!r}")
        for name in ("iterations_per_epoch", "val_iterations_per_epoch", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or null for nnU-Net's own), got {value}")
        if self.boundary_px < 1 or not 0.0 < self.tile_step_size <= 1.0 or self.min_size < 0:
            raise ValueError("need boundary_px >= 1, 0 < tile_step_size <= 1, min_size >= 0")
        check_threads(self.threads)


class NnUNetMethod(Method):
    """nnU-Net v2, 2d configuration, short-schedule trainer on the CPU; instances from interior/boundary classes."""

    name = "nnunet"
    version = "1"
    description = "nnU-Net v2 (2d, short-schedule trainer): interior / boundary classes, instances by watershed"
    requires = ("torch", "nnunetv2")
    extra = "nnunet"
    Config = NnUNetConfig
    #: Whole images: nnU-Net predicts with its own sliding window (Gaussian-weighted, overlapping tiles).
    default_tiling = TileConfig(tile=0)
    #: ``cpu``: 10 epochs of 50 batches of 2 on a plan for 1 GB: 500 batches, about 45 CPU minutes at the
    #: ~5-6 CPU s per batch measured on the DSB half image. README's DSB row
    #: (examples/configs/dsb/nnunet.yaml) is the shorter 10 batches per epoch.
    presets = {"cpu": {"trainer": "nnUNetTrainer_10epochs", "iterations_per_epoch": 50,
                       "val_iterations_per_epoch": 5, "batch_size": 2, "gpu_memory_target_gb": 1.0}}

    def __init__(self, config: NnUNetConfig | None = None) -> None:
        super().__init__(config)
        self._network: Any = None  # run.TrainedNetwork
        self._predictor: Any = None
        self._fold: int | str = "all"

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
        """Raw dataset, plan and preprocess, nnU-Net's training loop; validation F1@0.5 of the final network."""
        from cellbench.methods.adapters.nnunet.run import nnunet_environment, plan_and_preprocess, train_network

        cfg = self.config
        if not train:
            raise DataError("nnunet: no training images")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cellbench-nnunet-") as work, nnunet_environment(Path(work)) as env:
            train_cases, val_cases = write_raw_dataset(env["nnUNet_raw"], train, valid or (), target=cfg.target,
                                                       boundary_px=cfg.boundary_px, flatten_policy=cfg.flatten)
            plan_and_preprocess(DATASET_ID, gpu_memory_target_gb=cfg.gpu_memory_target_gb, batch_size=cfg.batch_size)
            self._fold = 0 if val_cases else "all"
            if val_cases:
                split = [{"train": train_cases, "val": val_cases}]
                (env["nnUNet_preprocessed"] / DATASET_NAME / "splits_final.json").write_text(json.dumps(split))
            seed_torch(seed)
            self._network = train_network(DATASET_ID, trainer_name=cfg.trainer, fold=self._fold,
                                          iterations_per_epoch=cfg.iterations_per_epoch,
                                          val_iterations_per_epoch=cfg.val_iterations_per_epoch, progress=progress)
        wall = time.perf_counter() - start
        self._predictor = None
        val = None
        if valid:
            val = validation_f1(valid, lambda image: flatten(self.predict(image)).labels, flatten_policy=cfg.flatten)
        net = self._network
        n = len(net.losses)
        epochs = tuple(
            EpochRecord(epoch=k, loss=net.losses[k], val_score=val if k == n - 1 else None,
                        extra={"val_loss": net.val_losses[k], "pseudo_dice": net.pseudo_dice[k]}
                        if k < min(len(net.val_losses), len(net.pseudo_dice)) else {})
            for k in range(n)
        )
        conf = net.plans["configurations"]["2d"]
        return TrainHistory(
            epochs=epochs, val_metric="f1@0.5" if valid else None, best_epoch=n - 1 if n else None, wall_s=wall,
            info={"trainer": net.trainer_name, "fold": self._fold, "patch_size": list(conf["patch_size"]),
                  "batch_size": conf["batch_size"], "target": cfg.target,
                  "loss": "Dice + cross-entropy with deep supervision (nnU-Net)",
                  "weights": "final epoch (nnU-Net's checkpoint_final)"},
        )

    # -- prediction ---------------------------------------------------------------------------------------
    def _require_predictor(self) -> Any:
        if self._network is None:
            raise DataError("nnunet: train or load weights before predicting")
        if self._predictor is None:
            from cellbench.methods.adapters.nnunet.run import build_predictor

            self._predictor = build_predictor(self._network, tile_step_size=self.config.tile_step_size,
                                              use_mirroring=self.config.use_mirroring)
        return self._predictor

    @on_config_threads
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """nnU-Net's class probabilities (classes x H x W) for one image."""
        import contextlib
        import io

        predictor = self._require_predictor()
        n_channels = len(self._network.dataset_json["channel_names"])
        x = nnunet_input(image, n_channels)
        with contextlib.redirect_stdout(io.StringIO()):
            _, probs = predictor.predict_single_npy_array(x, {"spacing": list(SPACING)}, None, None, True)
        return np.asarray(probs)[:, 0]

    @on_config_threads
    def predict(self, image: np.ndarray) -> InstanceSet:
        """Instances from the interior / boundary (or cell) probabilities; scores are mean cell probabilities."""
        return instances_from_semantic(self.probabilities(image), self.config.target, min_size=self.config.min_size)

    # -- weights ------------------------------------------------------------------------------------------
    def _model_folder(self, weights: Path, trainer_name: str) -> Path:
        return Path(weights) / "nnUNet_results" / DATASET_NAME / f"{trainer_name}__nnUNetPlans__2d"

    def save_weights(self, folder: Path) -> None:
        import torch

        if self._network is None:
            raise DataError("nnunet: train before saving")
        net = self._network
        out = self._model_folder(folder, net.trainer_name)
        (out / f"fold_{self._fold}").mkdir(parents=True)
        (out / "plans.json").write_text(json.dumps(net.plans, indent=2))
        (out / "dataset.json").write_text(json.dumps(net.dataset_json, indent=2))
        checkpoint = {"network_weights": net.state_dict, "trainer_name": net.trainer_name,
                      "init_args": {"configuration": "2d", "fold": self._fold},
                      "inference_allowed_mirroring_axes": list(net.mirror_axes) if net.mirror_axes else None}
        torch.save(checkpoint, out / f"fold_{self._fold}" / CHECKPOINT)

    def load_weights(self, folder: Path) -> None:
        """Read the trained-model folder, every name and value in it checked first (:mod:`.model_folder`)."""
        from cellbench.methods.adapters.nnunet.model_folder import (
            check_dataset_json,
            check_plans,
            find_checkpoint,
            read_checkpoint,
            read_json,
        )
        from cellbench.methods.adapters.nnunet.run import TrainedNetwork

        path = find_checkpoint(Path(folder) / "nnUNet_results" / DATASET_NAME)
        state, trainer, mirror = read_checkpoint(path)
        plans = check_plans(read_json(path.parent.parent / "plans.json"), path=path.parent.parent / "plans.json")
        dataset_json = check_dataset_json(read_json(path.parent.parent / "dataset.json"),
                                          path=path.parent.parent / "dataset.json")
        fold = path.parent.name.removeprefix("fold_")
        self._fold = int(fold) if fold.isdigit() else fold
        self._network = TrainedNetwork(state_dict=state, plans=plans, dataset_json=dataset_json, trainer_name=trainer,
                                       mirror_axes=mirror, losses=(), val_losses=(), pseudo_dice=())
        self._predictor = None
        try:
            self._require_predictor()
        except DataError as exc:  # a network that does not fit the plans fails here, naming the file
            raise DataError(exc.problem, path=path) from exc
