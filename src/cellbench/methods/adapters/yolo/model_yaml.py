"""A YOLO model yaml (the network description a model directory keeps) checked to be plain data naming known layers.

Ultralytics builds a network from its yaml dict in ``parse_model``: each row
``[from, repeats, module, args]`` names its module, which is looked up in
``ultralytics.nn.tasks``' globals (any function there, ``torch_safe_load``
included), in ``torch.nn`` (``nn.X``) or in ``torchvision.ops``; the
``activation`` entry is passed to ``eval``. A model directory is shared data,
so its yaml is checked here before Ultralytics sees it: every module is one of
Ultralytics' own layer classes (:data:`LAYERS`) or a ``torch.nn`` layer of
:data:`TORCH_LAYERS`, every argument a number, a string, None or a list of them,
and no other key than those Ultralytics' YOLO yamls hold (no ``activation``).

Importing this module needs neither torch nor Ultralytics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellbench.errors import DataError

__all__ = ["LAYERS", "TORCH_LAYERS", "check_model_yaml"]

#: Ultralytics' layer classes of its detection and segmentation yamls (YOLOv3 to YOLO11 and YOLO26).
#: Not ``TorchVision`` (it builds and may download a torchvision model) nor the text or RT-DETR heads.
LAYERS = frozenset({
    "Conv", "Conv2", "LightConv", "DWConv", "DWConvTranspose2d", "ConvTranspose", "Focus", "GhostConv", "RepConv",
    "Concat", "Bottleneck", "BottleneckCSP", "C1", "C2", "C2f", "C3", "C3x", "C3TR", "C3Ghost", "C3k2", "C2fCIB",
    "C2fPSA", "C2PSA", "PSA", "A2C2f", "SCDown", "ADown", "AConv", "ELAN1", "RepNCSPELAN4", "SPPELAN", "SPP", "SPPF",
    "RepC3", "GhostBottleneck", "CBLinear", "CBFuse", "HGStem", "HGBlock", "ResNetLayer", "Detect", "Segment",
    "Segment26", "v10Detect",
})
#: ``torch.nn`` layers the yamls name (``nn.Upsample``).
TORCH_LAYERS = frozenset({"nn.Upsample", "nn.Identity", "nn.BatchNorm2d", "nn.ConvTranspose2d"})

#: The keys of an Ultralytics model yaml as cellbench saves it (the file's and those the model adds).
_KEYS = frozenset({"nc", "scales", "scale", "backbone", "head", "yaml_file", "channels", "ch", "depth_multiple",
                   "width_multiple", "kpt_shape", "inplace", "end2end", "reg_max"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain_arg(value: Any) -> bool:
    """A layer argument: None, a bool, a number, a short string, or a list of them."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        return len(value) <= 64
    if isinstance(value, list):
        return all(_plain_arg(v) for v in value)
    return False


def _check_rows(rows: Any, section: str, path: Path | None) -> None:
    if not isinstance(rows, list) or not rows:
        raise DataError(f"YOLO model yaml: {section} must be a list of [from, repeats, module, args] rows", path=path)
    for k, row in enumerate(rows):
        where = f"YOLO model yaml: {section} row {k}"
        if not isinstance(row, list) or len(row) != 4:
            raise DataError(f"{where} must be [from, repeats, module, args], got {row!r:.80}", path=path)
        origin, repeats, module, args = row
        if not (_is_int(origin) or (isinstance(origin, list) and origin and all(_is_int(v) for v in origin))):
            raise DataError(f"{where}: 'from' must be a layer index or a list of them, got {origin!r:.60}", path=path)
        if not _is_int(repeats) or repeats < 1:
            raise DataError(f"{where}: repeats must be a positive integer, got {repeats!r:.60}", path=path)
        if not isinstance(module, str) or module not in LAYERS | TORCH_LAYERS:
            raise DataError(f"{where}: module {module!r:.80} is not one of Ultralytics' layers that cellbench builds "
                            f"({', '.join(sorted(LAYERS | TORCH_LAYERS))})", path=path)
        if not isinstance(args, list) or not _plain_arg(args):
            raise DataError(f"{where}: args must be a list of numbers, strings and lists, got {args!r:.80}", path=path)


def check_model_yaml(yaml_dict: Any, *, path: str | Path | None = None) -> dict:
    """``yaml_dict`` when it is a YOLO model yaml of known layers and plain values; a DataError naming ``path``.

    >>> row = [-1, 1, "Conv", [16, 3, 2]]
    >>> sorted(check_model_yaml({"nc": 1, "backbone": [row], "head": [row]}))
    ['backbone', 'head', 'nc']
    >>> check_model_yaml({"nc": 1, "backbone": [row], "head": [row], "activation": "nn.SiLU()"},
    ...                  path="m.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cellbench.errors.DataError: m.json: YOLO model yaml: key(s) ['activation'] are not part of ... as Python)
    """
    if not isinstance(yaml_dict, Mapping):
        raise DataError(f"YOLO model yaml must be a mapping, got {type(yaml_dict).__name__}", path=path)
    unknown = sorted(str(k) for k in yaml_dict if k not in _KEYS)
    if unknown:
        why = " (Ultralytics evaluates 'activation' as Python)" if "activation" in unknown else ""
        raise DataError(f"YOLO model yaml: key(s) {unknown} are not part of a model yaml cellbench loads{why}",
                        path=path)
    if not _is_int(yaml_dict.get("nc")) or yaml_dict["nc"] < 1:
        raise DataError(f"YOLO model yaml: nc must be a positive integer, got {yaml_dict.get('nc')!r:.40}", path=path)
    scales = yaml_dict.get("scales", {})
    if not isinstance(scales, Mapping) or not all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 3 and all(_is_number(x) for x in v)
            for k, v in scales.items()):
        raise DataError("YOLO model yaml: scales must map size letters to [depth, width, max_channels]", path=path)
    for key in ("scale", "yaml_file"):
        if not isinstance(yaml_dict.get(key, ""), str):
            raise DataError(f"YOLO model yaml: {key} must be a string", path=path)
    for key in ("channels", "ch", "reg_max"):
        if key in yaml_dict and not _is_int(yaml_dict[key]):
            raise DataError(f"YOLO model yaml: {key} must be an integer", path=path)
    for key in ("depth_multiple", "width_multiple"):
        if key in yaml_dict and not _is_number(yaml_dict[key]):
            raise DataError(f"YOLO model yaml: {key} must be a number", path=path)
    for key in ("inplace", "end2end"):
        if yaml_dict.get(key) is not None and not isinstance(yaml_dict[key], bool):
            raise DataError(f"YOLO model yaml: {key} must be true or false", path=path)
    if "kpt_shape" in yaml_dict and not _plain_arg(yaml_dict["kpt_shape"]):
        raise DataError("YOLO model yaml: kpt_shape must be a list of integers", path=path)
    _check_rows(yaml_dict.get("backbone"), "backbone", path)
    _check_rows(yaml_dict.get("head"), "head", path)
    return dict(yaml_dict)
