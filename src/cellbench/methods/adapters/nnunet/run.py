"""Driving nnU-Net v2 through its Python API: plan, preprocess, train, and the predictor.

These are the steps of ``nnUNetv2_plan_and_preprocess -d 1 -c 2d`` and
``nnUNetv2_train 1 2d FOLD -tr TRAINER -device cpu``, called as functions so
that cellbench can show progress and keep nnU-Net's folders where it wants:
nnU-Net finds its folders through the ``nnUNet_raw``,
``nnUNet_preprocessed`` and ``nnUNet_results`` environment variables, which
:func:`nnunet_environment` sets for the duration of a call (and restores
after). Data augmentation runs in the calling process during training
(``nnUNet_n_proc_DA=0``), so a seed fixes the batches (its Gaussian blur does not
pick a convolution by timing, :func:`_untimed`), and ``torch.compile`` is
off (``nnUNet_compile=f``: on a CPU it costs more than it saves on short runs).

The training loop is ``nnUNetTrainer.run_training``'s, step by step, with
a progress bar; the trainer's hooks (``on_train_start``, ``train_step``, ...) do
the work. ``iterations_per_epoch`` and ``batch_size`` are nnU-Net's own
settings (250 iterations; the planned batch size), changed on the trainer
and in the plans the way nnU-Net's documentation suggests for custom runs.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellbench.errors import DataError
from cellbench.methods.base import ProgressFactory
from cellbench.methods.adapters.nnunet.model_folder import CONFIGURATION

__all__ = ["TrainedNetwork", "build_predictor", "nnunet_environment", "plan_and_preprocess", "train_network"]

PLANS = "nnUNetPlans"


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in the environment for the duration of the block, the old values restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def nnunet_environment(work: Path) -> Iterator[dict[str, Path]]:
    """nnU-Net's folders under ``work`` (raw, preprocessed, results), set in the environment for the call."""
    folders = {name: Path(work) / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    with _environ({**{k: str(v) for k, v in folders.items()}, "nnUNet_compile": "f"}):
        yield folders


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """nnU-Net prints its plans and every epoch; cellbench shows a progress bar instead."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def plan_and_preprocess(dataset_id: int, *, gpu_memory_target_gb: float | None, batch_size: int | None,
                        num_processes: int = 1) -> dict:
    """Fingerprint, plan (ExperimentPlanner) and preprocess the 2-D configuration; returns the plans."""
    import json

    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    import torch

    # The planner sets torch's threads to nnUNet_n_proc_DA while it sizes the network (and fails on 0, which
    # users set to turn off augmentation workers): it plans with the threads this process has.
    with _quiet(), _environ({"nnUNet_n_proc_DA": str(torch.get_num_threads())}):
        extract_fingerprint_dataset(dataset_id, num_processes=num_processes, check_dataset_integrity=False,
                                    clean=True, verbose=False, show_progress_bar=False)
        plans, plans_id = plan_experiment_dataset(dataset_id, gpu_memory_target_in_gb=gpu_memory_target_gb)
    plans_file = Path(os.environ["nnUNet_preprocessed"]) / convert_id_to_dataset_name(dataset_id) / f"{plans_id}.json"
    plans = json.loads(plans_file.read_text())
    if CONFIGURATION not in plans["configurations"]:
        raise DataError(f"nnU-Net planned no {CONFIGURATION} configuration for these images")
    if batch_size is not None:  # nnU-Net's documented way to change it: edit the plans
        plans["configurations"][CONFIGURATION]["batch_size"] = int(batch_size)
        plans_file.write_text(json.dumps(plans, indent=2))
    with _quiet():
        preprocess_dataset(dataset_id, plans_id, configurations=(CONFIGURATION,), num_processes=[num_processes],
                           verbose=False, show_progress_bar=False)
    return plans


@dataclass(frozen=True)
class TrainedNetwork:
    """What prediction needs from a finished nnU-Net training."""

    state_dict: dict
    plans: dict
    dataset_json: dict
    trainer_name: str
    mirror_axes: tuple[int, ...] | None
    losses: tuple[float, ...]
    val_losses: tuple[float, ...]
    pseudo_dice: tuple[float, ...]


def train_network(dataset_id: int, *, trainer_name: str, fold: int | str, iterations_per_epoch: int | None,
                  val_iterations_per_epoch: int | None, progress: ProgressFactory | None) -> TrainedNetwork:
    """nnU-Net's training loop for the 2-D configuration on the CPU, with a bar per epoch and one of its steps."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    try:
        with _quiet():
            trainer = get_trainer_from_args(str(dataset_id), CONFIGURATION, fold, trainer_name, PLANS,
                                            device=torch.device("cpu"))
    except RuntimeError as exc:  # nnU-Net's message for an unknown trainer class
        raise DataError(f"nnunet: cannot make trainer {trainer_name!r} ({exc})") from exc
    if iterations_per_epoch is not None:
        trainer.num_iterations_per_epoch = int(iterations_per_epoch)
    if val_iterations_per_epoch is not None:
        trainer.num_val_iterations_per_epoch = int(val_iterations_per_epoch)
    make_transforms = trainer.get_training_transforms  # nnU-Net's staticmethod, called in on_train_start
    trainer.get_training_transforms = lambda *args, **kwargs: _untimed(make_transforms(*args, **kwargs))
    epochs = range(trainer.num_epochs)
    with _environ({"nnUNet_n_proc_DA": "0"}):  # augmentation in this process, so the seed fixes the batches
        _run_loop(trainer, epochs, progress)
    network = trainer.network._orig_mod if hasattr(trainer.network, "_orig_mod") else trainer.network
    log = trainer.logger.get_checkpoint()  # the logged values per key, one per epoch
    return TrainedNetwork(
        state_dict={k: v.detach().clone() for k, v in network.state_dict().items()},
        plans=trainer.plans_manager.plans, dataset_json=trainer.dataset_json,
        trainer_name=type(trainer).__name__,
        mirror_axes=tuple(trainer.inference_allowed_mirroring_axes) if trainer.inference_allowed_mirroring_axes
        else None,
        losses=tuple(float(v) for v in log.get("train_losses", [])),
        val_losses=tuple(float(v) for v in log.get("val_losses", [])),
        pseudo_dice=tuple(float(v) for v in log.get("mean_fg_dice", [])),
    )


def _untimed(transform: Any) -> Any:
    """``transform`` with its Gaussian blurs choosing no implementation by timing; returned for chaining.

    nnU-Net asks batchgeneratorsv2's ``GaussianBlurTransform`` to ``benchmark``: the
    first blur of each image size times a direct and an FFT convolution and keeps
    the faster. The two differ in the last bits, so which one won the race
    changed the weights a training with the same seed ends with (about one
    run in two in ``test_same_seed_same_result[nnunet]``). Without the benchmark
    every blur is the direct convolution, the same blur up to rounding.
    """
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform

    if isinstance(transform, GaussianBlurTransform):
        transform.benchmark = False
    for inner in (*getattr(transform, "transforms", ()), getattr(transform, "transform", None)):
        if inner is not None:
            _untimed(inner)
    return transform


def _run_loop(trainer: Any, epochs: range, progress: ProgressFactory | None) -> None:
    """``nnUNetTrainer.run_training``, with progress bars."""
    import torch

    with _quiet():
        trainer.on_train_start()
    try:
        for _ in progress(epochs, desc="nnunet training", unit="epoch") if progress else epochs:
            with _quiet():
                trainer.on_epoch_start()
                trainer.on_train_epoch_start()
            steps = range(trainer.num_iterations_per_epoch)
            outputs = [trainer.train_step(next(trainer.dataloader_train))
                       for _ in (progress(steps, desc="iterations", unit="batch", leave=False) if progress else steps)]
            with _quiet(), torch.no_grad():
                trainer.on_train_epoch_end(outputs)
                trainer.on_validation_epoch_start()
                trainer.on_validation_epoch_end([trainer.validation_step(next(trainer.dataloader_val))
                                                 for _ in range(trainer.num_val_iterations_per_epoch)])
                trainer.on_epoch_end()
    finally:
        with _quiet():
            trainer.on_train_end()  # saves checkpoint_final.pth and stops the data loaders


def build_predictor(network: TrainedNetwork, *, tile_step_size: float, use_mirroring: bool) -> Any:
    """An ``nnUNetPredictor`` on the CPU holding ``network`` (what nnU-Net's own model-folder loader builds).

    The plans, dataset.json and trainer name are checked against cellbench's lists first and the
    network is built by :func:`~cellbench.methods.adapters.nnunet.model_folder.network_from_plans`: nnU-Net
    is never asked to import a class or function a model file names (:mod:`.model_folder`).
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from cellbench.methods.adapters.nnunet.model_folder import (
        check_dataset_json,
        check_plans,
        check_trainer_name,
        network_from_plans,
    )
    from cellbench.methods.torch_file import check_state_dict

    check_trainer_name(network.trainer_name)
    state = check_state_dict(network.state_dict, what="nnU-Net network weights")
    plans_manager = PlansManager(check_plans(network.plans))
    dataset_json = check_dataset_json(network.dataset_json)
    configuration = plans_manager.get_configuration(CONFIGURATION)
    n_in = len(dataset_json["channel_names"])
    n_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    model = network_from_plans(network.plans, n_in, n_out)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"nnunet: weights do not fit the planned network ({exc})") from exc
    model.eval()
    with _quiet():
        predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(model, plans_manager, configuration, [state], dataset_json,
                                    network.trainer_name, network.mirror_axes)
    return predictor
