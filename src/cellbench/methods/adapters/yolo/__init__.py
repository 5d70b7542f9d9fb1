"""Ultralytics YOLO11-seg: the method (:mod:`.method`), its training set on disk (:mod:`.dataset`),
the Ultralytics runtime, kept offline and loaded without pickles (:mod:`.runtime`), and the check
that a saved network description names only Ultralytics' layers (:mod:`.model_yaml`).

Ultralytics is AGPL-3.0, so this method's extra (``cellbench[yolo]``) is not
part of ``[dev]`` or ``[all]``. Importing this package needs neither torch nor
ultralytics; :mod:`.runtime` and the method's calls do.
"""

from __future__ import annotations

__all__ = ["MODEL_SIZES"]

#: Model sizes (Ultralytics' scales) a config may name: ``yolo11{size}-seg``.
MODEL_SIZES = ("n", "s", "m", "l", "x")
