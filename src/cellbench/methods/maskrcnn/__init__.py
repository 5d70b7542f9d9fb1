"""Mask R-CNN (torchvision, v2 heads): the method (:mod:`.method`), its network (:mod:`.network`) and
training crops (:mod:`.targets`). Importing this package needs no torch; the submodules do."""

from __future__ import annotations

__all__ = ["BACKBONES"]

#: Backbones a config may name (kept here, torch-free, so a config validates without torch).
BACKBONES = ("resnet50", "resnet34", "resnet18")
