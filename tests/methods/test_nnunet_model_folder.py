"""A shared nnU-Net model directory never runs code: plans, checkpoint and trainer are checked before nnU-Net sees them.

The reported attack: ``plans.json`` names ``unittest.mock.Mock`` as the network class with an
``arch_kwargs`` value imported through ``_kw_requires_import`` (``builtins.exec``), and the
checkpoint stores ``network_weights`` as Python source (``torch.load(weights_only=True)`` reads a
string). nnU-Net's ``get_network_from_plans`` then builds ``Mock(load_state_dict=exec)`` and the
"weights" are executed when they are loaded. Every crafted folder here would write a marker file
if its code ran; each must be refused with a DataError naming the file, and the marker must not exist.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from cellbench.errors import DataError
from cellbench.methods.model_dir import WEIGHTS_DIR, load_model

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

import crafted_model_dirs as crafted  # noqa: E402
from crafted_model_dirs import Exec, payload, torch_bytes  # noqa: E402

FOLDER = "nnUNet_results/Dataset001_cellbench/nnUNetTrainer_1epoch__nnUNetPlans__2d"
CHECKPOINT = f"{FOLDER}/fold_all/checkpoint_final.pth"

#: A small 2-D plan as nnU-Net's ExperimentPlanner writes it for cellbench's raw dataset (fewer stages and features).
PLANS = {
    "dataset_name": "Dataset001_cellbench",
    "plans_name": "nnUNetPlans",
    "original_median_spacing_after_transp": [999.0, 1.0, 1.0],
    "original_median_shape_after_transp": [1, 32, 32],
    "image_reader_writer": "NaturalImage2DIO",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {"2d": {
        "data_identifier": "nnUNetPlans_2d",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": [32, 32],
        "median_image_size_in_voxels": [32.0, 32.0],
        "spacing": [1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv2d",
                "kernel_sizes": [[3, 3], [3, 3], [3, 3]], "strides": [[1, 1], [2, 2], [2, 2]],
                "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": True,
    }},
    "experiment_planner_used": "ExperimentPlanner",
    "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {"0": {
        "max": 198.0, "mean": 169.4, "median": 169.0, "min": 141.0, "percentile_00_5": 149.0,
        "percentile_99_5": 190.0, "std": 7.9}},
}
DATASET = {"channel_names": {"0": "microscopy"}, "labels": {"background": 0, "interior": 1, "boundary": 2},
           "numTraining": 2, "file_ending": ".tif", "overwrite_image_reader_writer": "NaturalImage2DIO",
           "name": "cellbench"}


def state_dict() -> dict:
    """Random weights of the PLANS network, built with dynamic_network_architectures directly."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    kwargs = dict(PLANS["configurations"]["2d"]["architecture"]["arch_kwargs"])
    kwargs.update(conv_op=torch.nn.Conv2d, norm_op=torch.nn.InstanceNorm2d, dropout_op=None,
                  nonlin=torch.nn.LeakyReLU)
    torch.manual_seed(0)
    return PlainConvUNet(input_channels=1, num_classes=3, deep_supervision=False, **kwargs).state_dict()


def checkpoint(weights: object, *, trainer: str = "nnUNetTrainer_1epoch", **more: object) -> dict:
    return {"network_weights": weights, "trainer_name": trainer, "init_args": {"configuration": "2d", "fold": "all"},
            "inference_allowed_mirroring_axes": [0, 1], **more}


def write_model_dir(folder: Path, *, plans: dict, ckpt: object, dataset: dict | None = None,
                    folder_name: str = FOLDER) -> Path:
    """An nnU-Net model directory as an attacker writes it (plans, dataset.json and a checkpoint)."""
    return crafted.write_model_dir(folder, "nnunet", {
        f"{folder_name}/plans.json": json.dumps(plans).encode(),
        f"{folder_name}/dataset.json": json.dumps(dataset or DATASET).encode(),
        f"{folder_name}/fold_all/checkpoint_final.pth": torch_bytes(ckpt)}, config={"use_mirroring": False},
        version="1")


def refused(folder: Path, marker: Path, file: str) -> DataError:
    """load_model refuses ``folder`` with a DataError naming ``file`` (a path under weights/), and no code ran."""
    return crafted.refused(folder, marker, folder / WEIGHTS_DIR / file)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "marker"


def test_the_reported_attack_is_refused_and_runs_nothing(tmp_path, marker):
    """Mock network class + exec imported through _kw_requires_import + Python source as weights."""
    plans = copy.deepcopy(PLANS)
    plans["configurations"]["2d"]["architecture"] = {
        "network_class_name": "unittest.mock.Mock",
        "arch_kwargs": {"load_state_dict": "builtins.exec"},
        "_kw_requires_import": ["load_state_dict"],
    }
    folder = write_model_dir(tmp_path / "m", plans=plans, ckpt=checkpoint(payload(marker), trainer="nnUNetTrainer"))
    refused(folder, marker, CHECKPOINT)


def test_the_reported_attack_is_refused_by_cellbench_predict(tmp_path, marker):
    """The way it was delivered: `cellbench predict` on the pulled model directory."""
    import tifffile

    from cellbench.cli.main import main

    plans = copy.deepcopy(PLANS)
    plans["configurations"]["2d"]["architecture"] = {
        "network_class_name": "unittest.mock.Mock", "arch_kwargs": {"load_state_dict": "builtins.exec"},
        "_kw_requires_import": ["load_state_dict"]}
    folder = write_model_dir(tmp_path / "m", plans=plans, ckpt=checkpoint(payload(marker), trainer="nnUNetTrainer"))
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((32, 32), np.uint8))
    assert main(["predict", str(folder), "--images", str(tmp_path / "image.tif"), "--out", str(tmp_path / "out")]) == 2
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_each_half_of_the_attack_is_refused_alone(tmp_path, marker):
    """Python source as weights under honest plans; a Mock network under honest weights."""
    folder = write_model_dir(tmp_path / "a", plans=PLANS, ckpt=checkpoint(payload(marker)))
    assert "network_weights" in str(refused(folder, marker, CHECKPOINT))
    plans = copy.deepcopy(PLANS)
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "unittest.mock.Mock"
    folder = write_model_dir(tmp_path / "b", plans=plans, ckpt=checkpoint(state_dict()))
    assert "unittest.mock.Mock" in str(refused(folder, marker, f"{FOLDER}/plans.json"))


def test_a_pickled_object_in_the_checkpoint_is_never_unpickled(tmp_path, marker):
    folder = write_model_dir(tmp_path / "m", plans=PLANS, ckpt=checkpoint({"w": Exec(payload(marker))}))
    assert "pickled Python objects" in str(refused(folder, marker, CHECKPOINT))


@pytest.mark.parametrize("weights", [
    pytest.param(["not", "tensors"], id="list"),
    pytest.param([{"conv.weight": torch.zeros(1)}], id="state-dict-in-a-list"),
    pytest.param(42, id="number"),
    pytest.param({"conv.weight": "source code"}, id="string-value"),
])
def test_weights_that_are_not_tensors_are_refused(tmp_path, marker, weights):
    folder = write_model_dir(tmp_path / "m", plans=PLANS, ckpt=checkpoint(weights))
    assert "not a state dict of tensors" in str(refused(folder, marker, CHECKPOINT))


def _set(plans: dict, dotted: str, value: object) -> dict:
    plans = copy.deepcopy(plans)
    *parents, last = dotted.split(".")
    node = plans
    for key in parents:
        node = node[key]
    node[last] = value
    return plans


ARCH = "configurations.2d.architecture"


@pytest.mark.parametrize(("dotted", "value", "says"), [
    # every name nnU-Net would locate (pydoc.locate) or search for in its own packages
    (f"{ARCH}.network_class_name", "os.system", "network class"),
    (f"{ARCH}.arch_kwargs.nonlin", "builtins.exec", "nonlin"),
    (f"{ARCH}.arch_kwargs.conv_op", "torch.nn.modules.evil.Conv2d", "conv_op"),
    (f"{ARCH}.arch_kwargs.norm_op", "torch.nn.Conv2d", "norm_op"),
    (f"{ARCH}._kw_requires_import", ["conv_op", "norm_op", "dropout_op", "nonlin", "n_stages"], "n_stages"),
    (f"{ARCH}.arch_kwargs.conv_bias", "builtins.exec", "conv_bias"),
    (f"{ARCH}.arch_kwargs.initialize", False, "initialize"),
    ("configurations.2d.preprocessor_name", "nnUNetTrainer", "preprocessor"),
    ("configurations.2d.normalization_schemes", ["ExperimentPlanner"], "normalization"),
    ("configurations.2d.resampling_fn_data", "recursive_find_python_class", "resampling"),
    ("configurations.2d.resampling_fn_probabilities_kwargs", {"is_seg": "exec"}, "resampling"),
    ("configurations.2d.inherits_from", "3d_fullres", "inherits_from"),
    ("configurations.2d.previous_stage", "3d_lowres", "previous_stage"),
    ("label_manager", "nnUNetTrainer", "label manager"),
    ("image_reader_writer", "nnUNetTrainer", "reader"),
    ("transpose_forward", [0, 2, 2], "transpose"),
])
def test_plans_naming_anything_else_are_refused(tmp_path, marker, dotted, value, says):
    folder = write_model_dir(tmp_path / "m", plans=_set(PLANS, dotted, value), ckpt=checkpoint(state_dict()))
    assert says in str(refused(folder, marker, f"{FOLDER}/plans.json"))


@pytest.mark.parametrize("trainer", ["nnUNetTrainerDA5", "nnUNetTrainer_5epochs.evil", "os.system", 7])
def test_checkpoint_trainer_names_outside_the_list_are_refused(tmp_path, marker, trainer):
    """nnU-Net's predictor looks the checkpoint's trainer_name up and imports module after module to find it."""
    folder = write_model_dir(tmp_path / "m", plans=PLANS, ckpt=checkpoint(state_dict(), trainer=trainer))
    assert "trainer" in str(refused(folder, marker, CHECKPOINT))


def test_the_folder_name_names_an_allowed_trainer(tmp_path, marker):
    folder = write_model_dir(tmp_path / "m", plans=PLANS, ckpt=checkpoint(state_dict()),
                             folder_name="nnUNet_results/Dataset001_cellbench/evil__nnUNetPlans__2d")
    with pytest.raises(DataError, match="trainer"):
        load_model(folder)


def test_dataset_json_naming_a_reader_or_regions_is_refused(tmp_path, marker):
    folder = write_model_dir(tmp_path / "m", plans=PLANS, ckpt=checkpoint(state_dict()),
                             dataset={**DATASET, "overwrite_image_reader_writer": "nnUNetTrainer"})
    assert "reader" in str(refused(folder, marker, f"{FOLDER}/dataset.json"))
    folder = write_model_dir(tmp_path / "n", plans=PLANS, ckpt=checkpoint(state_dict()),
                             dataset={**DATASET, "labels": {"background": 0, "cell": "exec"}})
    assert "labels" in str(refused(folder, marker, f"{FOLDER}/dataset.json"))


def test_an_honest_model_directory_loads_and_predicts(tmp_path):
    """The checks pass nnU-Net's own plan: the same folder with its real weights loads and predicts."""
    folder = write_model_dir(tmp_path / "m", plans=PLANS, ckpt=checkpoint(state_dict()))
    model = load_model(folder)
    probs = model.method.probabilities(np.random.default_rng(0).normal(100, 10, (40, 36)).astype(np.float32))
    assert probs.shape == (3, 40, 36) and np.allclose(probs.sum(axis=0), 1, atol=1e-4)


def test_a_residual_encoder_plan_loads(tmp_path):
    """nnU-Net's ResEnc presets name ResidualEncoderUNet (n_blocks_per_stage instead of n_conv_per_stage)."""
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    plans = copy.deepcopy(PLANS)
    arch = plans["configurations"]["2d"]["architecture"]
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    arch["arch_kwargs"]["n_blocks_per_stage"] = arch["arch_kwargs"].pop("n_conv_per_stage")
    kwargs = dict(arch["arch_kwargs"], conv_op=torch.nn.Conv2d, norm_op=torch.nn.InstanceNorm2d, dropout_op=None,
                  nonlin=torch.nn.LeakyReLU)
    net = ResidualEncoderUNet(input_channels=1, num_classes=3, deep_supervision=False, **kwargs)
    load_model(write_model_dir(tmp_path / "m", plans=plans, ckpt=checkpoint(net.state_dict())))


def test_config_trainer_is_one_of_the_list():
    from cellbench.methods.adapters.nnunet import NnUNetConfig

    assert NnUNetConfig(trainer="nnUNetTrainer_10epochs").trainer == "nnUNetTrainer_10epochs"
    with pytest.raises(ValueError, match="trainer"):
        NnUNetConfig(trainer="nnUNetTrainerDA5")
