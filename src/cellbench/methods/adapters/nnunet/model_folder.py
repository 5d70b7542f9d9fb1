"""nnU-Net's trained-model folder read back without letting it choose code: names checked, network built here.

nnU-Net's files name code. ``plans.json`` names the network class and, under
``_kw_requires_import``, arguments that nnU-Net imports with ``pydoc.locate``
(any importable name: ``builtins.exec`` will do); its preprocessor,
normalisation, resampling functions, label manager and image reader are
names nnU-Net searches its own packages for, importing module after module;
the checkpoint's ``trainer_name`` is looked up the same way (and in the
folders of ``nnUNet_extTrainer``), and its ``network_weights`` are handed to
whatever network that built. A model directory is shared data, so a plans
file naming ``unittest.mock.Mock`` with ``load_state_dict: builtins.exec``
and a checkpoint holding Python source as "weights" ran that source.

Here every name must be one of a fixed list, every other value plain numbers,
and the weights a state dict of tensors, all checked before nnU-Net is
called; a file that fails is a :class:`~cellbench.errors.DataError` naming
it. The network is then built by :func:`network_from_plans` from the listed
class and ``torch.nn`` layers (what ``nnUNetTrainer.build_network_architecture``
builds), never by nnU-Net's ``get_network_from_plans`` or its trainer lookup.
The lists hold what nnU-Net's default planner writes and the trainers that
only change the schedule (so they build ``nnUNetTrainer``'s network).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellbench.errors import DataError
from cellbench.methods.torch_file import check_state_dict, read_torch_file

__all__ = ["CHECKPOINT", "CONFIGURATION", "NETWORKS", "TRAINERS", "check_dataset_json", "check_plans",
           "check_trainer_name", "find_checkpoint", "network_from_plans", "read_checkpoint", "read_json"]

CHECKPOINT = "checkpoint_final.pth"
CONFIGURATION = "2d"

#: nnU-Net's trainer and its schedule-only variants: they train longer or shorter (and without mirroring),
#: and build nnUNetTrainer's network.
TRAINERS = frozenset({
    "nnUNetTrainer", "nnUNetTrainer_1epoch",
    *(f"nnUNetTrainer_{n}epochs" for n in (5, 10, 20, 50, 100, 250, 500, 750, 2000, 4000, 8000)),
    *(f"nnUNetTrainer_{n}epochs_NoMirroring" for n in (250, 2000, 4000, 8000)),
})

#: The network classes nnU-Net's planners name (default and residual-encoder presets).
NETWORKS = {f"dynamic_network_architectures.architectures.unet.{name}": name
            for name in ("PlainConvUNet", "ResidualEncoderUNet")}

#: The ``torch.nn`` layers each imported argument of the network may be.
_LAYERS = {
    "conv_op": ("Conv1d", "Conv2d", "Conv3d"),
    "norm_op": ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
    "dropout_op": ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d"),
    "nonlin": ("LeakyReLU", "ReLU", "PReLU", "ELU", "GELU", "SiLU"),
}
#: Arguments cellbench gives the network itself.
_SET_HERE = ("input_channels", "num_classes", "deep_supervision")

#: Names nnU-Net looks up in its own packages, by field.
_PREPROCESSORS = ("DefaultPreprocessor",)
_NORMALIZATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization",
                   "RGBTo01Normalization")
_RESAMPLING = ("resample_data_or_seg_to_shape", "resample_torch_fornnunet", "no_resampling_hack")
_READERS = ("NaturalImage2DIO", "SimpleITKIO", "SimpleITKIOWithReorient", "Tiff3DIO", "NibabelIO",
            "NibabelIOWithReorient")
_LABEL_MANAGERS = ("LabelManager",)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> bool:
    """None, a bool, a number, or lists and string-keyed mappings of them (no strings: they could name code)."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _one_of(value: Any, allowed: tuple[str, ...] | frozenset[str], field: str, path: Path | None) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise DataError(f"{field} {value!r:.80} is not one cellbench loads (allowed: {', '.join(sorted(allowed))})",
                        path=path)
    return value


def check_trainer_name(name: Any, *, path: Path | None = None) -> str:
    """``name`` when it is one of :data:`TRAINERS`; a DataError naming ``path`` otherwise.

    >>> check_trainer_name("nnUNetTrainer_5epochs")
    'nnUNetTrainer_5epochs'
    """
    return _one_of(name, TRAINERS, "nnU-Net trainer", path)


def _layer_names(role: str) -> dict[str, Any]:
    """Spelling -> ``torch.nn`` class for one imported argument: ``torch.nn.Conv2d`` and nnU-Net's
    ``torch.nn.modules.conv.Conv2d``."""
    import torch

    names = {}
    for name in _LAYERS[role]:
        layer = getattr(torch.nn, name)
        names[f"torch.nn.{name}"] = names[f"{layer.__module__}.{layer.__qualname__}"] = layer
    return names


def _network_class(name: Any, path: Path | None) -> type:
    from dynamic_network_architectures.architectures import unet

    return getattr(unet, NETWORKS[_one_of(name, tuple(NETWORKS), "network class", path)])


def _check_architecture(arch: Any, path: Path | None) -> None:
    import inspect

    if not isinstance(arch, Mapping) or set(arch) != {"network_class_name", "arch_kwargs", "_kw_requires_import"}:
        raise DataError("plans: the 2d architecture must hold network_class_name, arch_kwargs and "
                        "_kw_requires_import only", path=path)
    network = _network_class(arch["network_class_name"], path)
    kwargs, imported = arch["arch_kwargs"], arch["_kw_requires_import"]
    if not isinstance(kwargs, Mapping) or not isinstance(imported, list):
        raise DataError("plans: arch_kwargs must be a mapping and _kw_requires_import a list", path=path)
    for key in imported:
        if not isinstance(key, str) or key not in _LAYERS or key not in kwargs:
            raise DataError(f"plans: _kw_requires_import names {key!r:.60}; only {', '.join(_LAYERS)} are imported",
                            path=path)
    accepted = set(inspect.signature(network).parameters) - set(_SET_HERE)
    for key, value in kwargs.items():
        if key not in accepted:
            raise DataError(f"plans: arch_kwargs {key!r:.60} is not an argument of {network.__name__}", path=path)
        if key in imported:
            if value is not None and (not isinstance(value, str) or value not in _layer_names(key)):
                raise DataError(f"plans: {key} {value!r:.80} is not one of the torch.nn layers cellbench loads "
                                f"({', '.join(_LAYERS[key])})", path=path)
        elif not _plain(value):
            raise DataError(f"plans: arch_kwargs {key} must be numbers (lists and mappings of them), got "
                            f"{value!r:.80}", path=path)


def _check_configuration(conf: Any, path: Path | None) -> None:
    if not isinstance(conf, Mapping):
        raise DataError(f"plans: no {CONFIGURATION!r} configuration", path=path)
    for key in ("inherits_from", "previous_stage"):
        if key in conf:
            raise DataError(f"plans: the 2d configuration has {key} (another configuration's settings or a "
                            f"cascade); cellbench's nnU-Net models have one stand-alone 2d configuration", path=path)
    _one_of(conf.get("preprocessor_name"), _PREPROCESSORS, "preprocessor", path)
    schemes = conf.get("normalization_schemes")
    if not isinstance(schemes, list) or not schemes:
        raise DataError("plans: normalization_schemes must be a list of names", path=path)
    for name in schemes:
        _one_of(name, _NORMALIZATIONS, "normalization scheme", path)
    for kind in ("data", "seg", "probabilities"):
        _one_of(conf.get(f"resampling_fn_{kind}"), _RESAMPLING, f"resampling function ({kind})", path)
        settings = conf.get(f"resampling_fn_{kind}_kwargs")
        if not isinstance(settings, Mapping) or not all(_plain(v) and not isinstance(v, (list, Mapping))
                                                        for v in settings.values()):
            raise DataError(f"plans: resampling_fn_{kind}_kwargs must map names to numbers, got {settings!r:.80}",
                            path=path)
    for key in ("patch_size", "spacing"):
        value = conf.get(key)
        if not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) and v > 0 for v in value):
            raise DataError(f"plans: {key} must be two positive numbers, got {value!r:.80}", path=path)
    if not isinstance(conf.get("use_mask_for_norm"), list) or not _plain(conf["use_mask_for_norm"]):
        raise DataError("plans: use_mask_for_norm must be a list of booleans", path=path)
    _check_architecture(conf.get("architecture"), path)


def check_plans(plans: Any, *, path: Path | None = None) -> dict:
    """``plans`` when every name in it is one cellbench loads and its values are plain; a DataError otherwise."""
    if not isinstance(plans, Mapping) or not isinstance(plans.get("configurations"), Mapping):
        raise DataError("not nnU-Net plans (no configurations)", path=path)
    _check_configuration(plans["configurations"].get(CONFIGURATION), path)
    if "image_reader_writer" in plans:
        _one_of(plans["image_reader_writer"], _READERS, "image reader", path)
    if "label_manager" in plans:
        _one_of(plans["label_manager"], _LABEL_MANAGERS, "label manager", path)
    for key in ("transpose_forward", "transpose_backward"):
        value = plans.get(key)
        if not isinstance(value, list) or not all(_is_number(v) for v in value) or sorted(value) != [0, 1, 2]:
            raise DataError(f"plans: {key} must be a permutation of [0, 1, 2], got {value!r:.80}", path=path)
    if not _plain(plans.get("foreground_intensity_properties_per_channel")):
        raise DataError("plans: foreground_intensity_properties_per_channel must hold numbers", path=path)
    return dict(plans)


def check_dataset_json(dataset: Any, *, path: Path | None = None) -> dict:
    """``dataset.json`` when it has channel names and integer labels (no regions), and names no other reader."""
    if not isinstance(dataset, Mapping):
        raise DataError("dataset.json must hold a mapping", path=path)
    channels, labels = dataset.get("channel_names"), dataset.get("labels")
    if not isinstance(channels, Mapping) or not channels or not all(isinstance(v, str) for v in channels.values()):
        raise DataError("dataset.json: channel_names must map channels to names", path=path)
    if not isinstance(labels, Mapping) or not all(_is_number(v) and int(v) == v for v in labels.values()) \
            or "regions_class_order" in dataset:
        raise DataError("dataset.json: labels must map class names to integers (no regions)", path=path)
    if "overwrite_image_reader_writer" in dataset:
        _one_of(dataset["overwrite_image_reader_writer"], _READERS, "image reader", path)
    return dict(dataset)


def read_json(path: Path) -> Any:
    """A JSON file of the model folder; a DataError naming it when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not a readable JSON file ({type(exc).__name__}: {exc})", path=path) from exc


def find_checkpoint(results: Path) -> Path:
    """The one ``<trainer>__nnUNetPlans__2d/fold_<f>/checkpoint_final.pth`` under ``results``."""
    found = sorted(results.glob(f"*__nnUNetPlans__{CONFIGURATION}/fold_*/{CHECKPOINT}"))
    if len(found) != 1:
        raise DataError(f"expected one nnU-Net {CHECKPOINT} under {results.name}, found {len(found)}", path=results)
    return found[0]


def read_checkpoint(path: Path) -> tuple[dict, str, tuple[int, ...] | None]:
    """(network weights, trainer name, mirroring axes) of an nnU-Net checkpoint, each checked."""
    checkpoint = read_torch_file(path, what="nnU-Net checkpoint")
    if not isinstance(checkpoint, Mapping) or "network_weights" not in checkpoint:
        raise DataError("nnU-Net checkpoint: no network_weights", path=path)
    state = check_state_dict(checkpoint["network_weights"], what="nnU-Net checkpoint network_weights", path=path)
    trainer = check_trainer_name(checkpoint.get("trainer_name"), path=path)
    folder_trainer = path.parent.parent.name.split("__")[0]
    if folder_trainer != trainer:
        raise DataError(f"the checkpoint's trainer {trainer!r} is not its folder's ({folder_trainer!r})", path=path)
    configuration = (checkpoint.get("init_args") or {}).get("configuration", CONFIGURATION)
    if configuration != CONFIGURATION:
        raise DataError(f"nnU-Net checkpoint of configuration {configuration!r:.40}; expected 2d", path=path)
    mirror = checkpoint.get("inference_allowed_mirroring_axes")
    if mirror is not None and (not isinstance(mirror, (list, tuple)) or len(set(mirror)) != len(mirror)
                               or not all(v in (0, 1) and not isinstance(v, bool) for v in mirror)):
        raise DataError(f"inference_allowed_mirroring_axes must be axes 0 and/or 1, got {mirror!r:.60}", path=path)
    return state, trainer, tuple(mirror) if mirror else None


def network_from_plans(plans: Mapping, n_in: int, n_out: int) -> Any:
    """The network of the plans' 2d configuration, without deep supervision, randomly initialised.

    What nnU-Net's ``get_network_from_plans`` builds, with the class and the
    imported layers taken from cellbench's lists instead of located by name.
    """
    conf = check_plans(plans)["configurations"][CONFIGURATION]
    arch = conf["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = _layer_names(key)[kwargs[key]]
    network = _network_class(arch["network_class_name"], None)
    try:
        return network(input_channels=n_in, num_classes=n_out, deep_supervision=False, **kwargs)
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise DataError(f"plans: cannot build {network.__name__} ({type(exc).__name__}: {exc})") from exc
