"""Pretrained weights for a detector: a whole detector's checkpoint, or an ImageNet backbone alone.

``pretrained`` in a detector's config names a file, or a name of the
pretrained-model registry (:func:`resolve_weights`). :func:`load_pretrained`
tells the two kinds of file apart by their names:

* a whole detector (names under ``backbone.``, as torchvision's COCO
  checkpoints): every parameter is taken except the class-specific last
  layers when the file has another number of classes, the usual transfer
  recipe;
* a backbone alone (an ImageNet classifier's state dict, timm's or
  torchvision's): its parameters go into the backbone's trunk, matched by name
  (timm's feature wrappers write ``layers_0`` for ``layers.0``); the
  classifier's own layers (``fc``, ``head``, ...) are left out, and the FPN and
  heads stay randomly initialised.

Anything that does not fit is a DataError naming the file and what differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from cellbench.errors import DataError
from cellbench.methods import torch_file

__all__ = ["load_backbone", "load_pretrained", "read_info", "read_state_dict", "resolve_weights"]


def resolve_weights(name_or_path: str, *, method: str) -> Path:
    """A pretrained weights file: an existing path, else a name of :mod:`cellbench.pretrained` for ``method``."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    try:
        from cellbench.pretrained import resolve_pretrained
    except ImportError as exc:
        raise DataError(f"pretrained {name_or_path!r} is not a file, and the pretrained-model registry "
                        f"(cellbench.pretrained) is not available to look it up") from exc
    return Path(resolve_pretrained(name_or_path, method=method))


def read_state_dict(path: str | Path, *, what: str = "detector weights file") -> dict[str, torch.Tensor]:
    """A state dict read safely, unwrapped from a training checkpoint (torchvision's ``{"model": ...}``, timm's
    ``{"state_dict": ...}``); a DataError names a bad file."""
    return torch_file.read_state_dict(path, what=what, wrappers=("model", "state_dict"))


def load_pretrained(model: nn.Module, path: str | Path, *, class_heads: Sequence[str] = (),
                    new_heads: Sequence[str] = (), hint: str = "") -> dict:
    """Load ``path`` into a torchvision-style detector (``model.backbone.body``); what was loaded, for the record.

    ``class_heads``: name prefixes of the parameters that depend on the number
    of classes, re-initialised when the file's shapes differ. ``new_heads``:
    name prefixes of heads the file's detector may not have (MS R-CNN's
    MaskIoU head in a Mask R-CNN file, Cascade Mask R-CNN's three stages): the
    model's parameters there that the file lacks keep their initialisation, and
    the file's there that the model lacks are left out. ``hint`` ends the error
    message for a whole detector that does not fit ("COCO weights need backbone
    resnet50").
    """
    state = read_state_dict(path)
    if not any(k.startswith("backbone.") for k in state):
        return load_backbone(model.backbone.body, state, path)
    fit = torch_file.fit_state_dict(model.state_dict(), state, class_heads=class_heads, new_heads=new_heads)
    if fit.problems:
        raise DataError(f"weights do not fit this {type(model).__name__} ({fit.problems}){hint}", path=path)
    model.load_state_dict(fit.load, strict=False)
    record = {"from": str(path), "class_heads_reinitialised": bool(fit.reinitialised)}
    if fit.new_initialised or fit.left_out:
        record |= {"new_heads_initialised": fit.new_initialised, "file_heads_left_out": fit.left_out}
    return record


def _flat(name: str) -> str:
    return name.replace(".", "_")


def load_backbone(body: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> dict:
    """Load a classifier's state dict into a backbone's trunk (``body``); names match with ``.`` and ``_`` alike.

    Every trunk parameter and buffer must be in the file with its shape (batch
    norm's ``num_batches_tracked`` may be absent), and the file may hold
    nothing more under the trunk's layers (a deeper network of the same family
    would otherwise load its first blocks); what lies outside them (the
    classifier: ``fc``, ``head``, Swin's last ``norm``, HRNet's ``incre_modules``)
    is left out. Layers the detector adds to the trunk (``norms``:
    MMDetection's per-output LayerNorm on Swin) are not looked for.
    """
    trunk = getattr(body, "trunk", body)
    prefix = "trunk." if trunk is not body else ""
    own = {k.removeprefix(prefix): v for k, v in body.state_dict().items() if k.startswith(prefix)}
    by_flat = {_flat(k.removeprefix("module.")): k for k in state}
    if len(by_flat) != len(state):
        raise DataError("backbone weights file: two names differ only by '.' and '_'", path=path)
    taken: dict[str, torch.Tensor] = {}
    matched: set[str] = set()
    missing, wrong = [], []
    for key, value in own.items():
        theirs = by_flat.get(_flat(key))
        if theirs is None:
            if not key.endswith("num_batches_tracked"):
                missing.append(key)
            continue
        matched.add(theirs)
        if state[theirs].shape != value.shape:
            wrong.append(key)
        else:
            taken[prefix + key] = state[theirs]
    layers = tuple(_flat(name) + "_" for name, _ in trunk.named_children())
    unexpected = [k for k in state if k not in matched and _flat(k.removeprefix("module.")).startswith(layers)]
    if missing or wrong or unexpected:
        misfit = torch_file.misfit_text(wrong, missing, unexpected)
        raise DataError(f"backbone weights do not fit this backbone ({misfit}): a backbone file must be the same "
                        "architecture's classifier, a detector file has names under 'backbone.'", path=path)
    body.load_state_dict(taken, strict=False)
    return {"from": str(path), "backbone_only": True, "left_out": len(state) - len(taken)}


def read_info(path: str | Path, *, paper: str, backbone: str) -> tuple[dict, tuple[str, ...]]:
    """A model directory's info file (``<name>.json``: classes, backbone, origin of the weights) and its classes;
    a DataError naming the file when it cannot be read or is for another backbone than ``backbone``."""
    try:
        info = json.loads(Path(path).read_text())
        classes = tuple(str(c) for c in info["classes"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the {paper} classes ({exc})", path=path) from exc
    if info.get("backbone") != backbone:
        raise DataError(f"weights are for backbone {info.get('backbone')!r}, the config says {backbone!r}", path=path)
    return info, classes
