"""Segmentation methods behind one interface (:class:`~cellbench.methods.base.Method`).

Methods are looked up by name in :data:`METHODS`, a fixed table of import
paths: nothing is imported (and no torch is needed) until a method is asked
for, and nothing registers itself at import time.
"""

from __future__ import annotations

import importlib
import importlib.util

from cellbench.errors import DataError
from cellbench.methods.base import EpochRecord, Method, TrainHistory, config_from_dict, config_to_dict

__all__ = [
    "METHODS",
    "EpochRecord",
    "Method",
    "TrainHistory",
    "config_from_dict",
    "config_to_dict",
    "get_method",
    "missing_requirements",
    "unmet_requirements",
]

#: Method name -> ``module:Class``. Add a line here to add a method.
METHODS: dict[str, str] = {
    "watershed": "cellbench.methods.watershed:WatershedMethod",
    "cellpose": "cellbench.methods.cellpose:CellposeMethod",
    "cellseg1": "cellbench.methods.cellseg1.method:CellSeg1",
    "unet": "cellbench.methods.unet:UNetMethod",
    "maunet": "cellbench.methods.maunet:MAUNetMethod",
    "mediar": "cellbench.methods.mediar.method:MediarMethod",
    "stardist": "cellbench.methods.stardist:StarDistMethod",
    "nnunet": "cellbench.methods.nnunet.method:NnUNetMethod",
    "maskrcnn": "cellbench.methods.detection.maskrcnn:MaskRCNNMethod",
    "msrcnn": "cellbench.methods.detection.msrcnn:MSRCNNMethod",
    "cascade": "cellbench.methods.detection.cascade:CascadeMethod",
    "mask2former": "cellbench.methods.mask2former.method:Mask2FormerMethod",
    "sam": "cellbench.methods.sam:SAMMethod",
    "yolo": "cellbench.methods.yolo.method:YOLOMethod",
}


def get_method(name: str) -> type[Method]:
    """The method class called ``name``; a clear error names what is missing."""
    target = METHODS.get(name)
    if target is None:
        raise DataError(f"unknown method {name!r}; methods: {', '.join(sorted(METHODS)) or 'none'}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DataError(f"method {name!r} cannot be imported ({exc}); see `cellbench methods`") from exc
    return getattr(module, class_name)


def missing_requirements(requires: tuple[str, ...]) -> list[str]:
    """The import names in ``requires`` that are not installed."""
    return [r for r in requires if importlib.util.find_spec(r) is None]


def unmet_requirements(cls: type[Method]) -> str | None:
    """What a method class still needs here, with the extra to install, or None when it can run.

    >>> unmet_requirements(get_method("watershed")) is None
    True
    """
    missing = missing_requirements(cls.requires)
    if not missing:
        return None
    hint = f" (pip install 'cellbench[{cls.extra}]')" if getattr(cls, "extra", None) else ""
    return f"needs {', '.join(missing)}{hint}"
