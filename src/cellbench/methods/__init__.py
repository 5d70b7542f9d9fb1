"""Segmentation methods behind one interface (:class:`~cellbench.methods.base.Method`).

This package is the framework every method shares: the interface
(:mod:`.base`), the one training path (:mod:`.training`, :mod:`.validation`,
:mod:`.checkpoint`, :mod:`.epochs`), tiled prediction (:mod:`.tiling`), model directories
(:mod:`.model_dir`, :mod:`.torch_file`, :mod:`.config_file`), where torch runs
(:mod:`.device`), preprocessing and seeding. The methods themselves, the
adapters, live apart in :mod:`cellbench.methods.adapters` (one module or
package each; the detection family in ``adapters/detection``) and import the
framework, never the other way round.

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
    "watershed": "cellbench.methods.adapters.watershed:WatershedMethod",
    "cellpose": "cellbench.methods.adapters.cellpose:CellposeMethod",
    "cellseg1": "cellbench.methods.adapters.cellseg1.method:CellSeg1",
    "unet": "cellbench.methods.adapters.unet:UNetMethod",
    "maunet": "cellbench.methods.adapters.maunet:MAUNetMethod",
    "mesmer": "cellbench.methods.adapters.mesmer:MesmerMethod",
    "featurenet": "cellbench.methods.adapters.featurenet:FeatureNetMethod",
    "mediar": "cellbench.methods.adapters.mediar.method:MediarMethod",
    "stardist": "cellbench.methods.adapters.stardist:StarDistMethod",
    "nnunet": "cellbench.methods.adapters.nnunet.method:NnUNetMethod",
    "maskrcnn": "cellbench.methods.adapters.detection.maskrcnn:MaskRCNNMethod",
    "msrcnn": "cellbench.methods.adapters.detection.msrcnn:MSRCNNMethod",
    "cascade": "cellbench.methods.adapters.detection.cascade:CascadeMethod",
    "solov2": "cellbench.methods.adapters.detection.solov2:SOLOv2Method",
    "retinamask": "cellbench.methods.adapters.detection.retinamask:RetinaMaskMethod",
    "centermask2": "cellbench.methods.adapters.detection.centermask:CenterMaskMethod",
    "mask2former": "cellbench.methods.adapters.mask2former.method:Mask2FormerMethod",
    "sam": "cellbench.methods.adapters.sam:SAMMethod",
    "yolo": "cellbench.methods.adapters.yolo.method:YOLOMethod",
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
