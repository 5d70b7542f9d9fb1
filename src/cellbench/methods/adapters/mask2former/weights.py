"""Weights files of Mask2Former: read safely, and loaded whole or into the backbone alone.

Every file is read without running pickled code by
:mod:`cellbench.methods.torch_file` (``.safetensors`` files with
``safetensors``, anything else with ``torch.load(weights_only=True)``),
unwrapped from a training checkpoint's ``model`` / ``state_dict`` entry.
:func:`load_pretrained` tells two kinds of file apart by their names:

* a whole Mask2Former in Hugging Face's layout (names under
  ``model.pixel_level_module.``: ``Mask2FormerForUniversalSegmentation``'s
  ``model.safetensors``, or a cellbench model's weights): every parameter is
  taken, except the class layer when the file has another number of classes;
* a backbone alone: Hugging Face's image classifier of the same family
  (``SwinForImageClassification``, ``ResNetForImageClassification``: names
  under ``swin.`` / ``resnet.``) or a bare ``SwinBackbone`` / ``ResNetBackbone``;
  its classifier layers are left out, and so are the LayerNorms a Swin backbone
  puts on its outputs (``hidden_states_norms``) when the file has none.

A Hugging Face model folder (``config.json`` and ``model.safetensors``, as
``save_pretrained`` writes it and the Hub holds Mask2Former's COCO checkpoints)
is read by ``transformers``' own ``from_pretrained``, offline and from
safetensors only, which also renames the tensors of checkpoints written by
older ``transformers`` versions; its weights are then loaded as a whole file.

Anything that does not fit is a DataError naming the file and what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cellbench.errors import DataError
from cellbench.methods import torch_file
from cellbench.methods.adapters.mask2former.backbones import REGISTRY
from cellbench.methods.adapters.mask2former.network import BACKBONE_PREFIX, CLASS_HEADS

__all__ = ["load_pretrained", "read_weights", "resolve_pretrained", "write_weights"]

#: Backbone parameters a classifier's file need not hold (Swin's per-output norms are the backbone's own).
OPTIONAL_IN_BACKBONE_FILE = ("hidden_states_norms.",)


def resolve_pretrained(name_or_path: str) -> Path:
    """``pretrained`` as a path: an existing file or Hugging Face model folder, else a name of the
    pretrained-model registry (:mod:`cellbench.pretrained`, checksum-verified downloads)."""
    from cellbench.methods.adapters.detection.weights import resolve_weights

    path = Path(name_or_path).expanduser()
    return path if path.is_dir() else resolve_weights(name_or_path, method="mask2former")


def _read_folder(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a Hugging Face Mask2Former folder, through ``from_pretrained`` (offline, safetensors)."""
    from transformers import Mask2FormerForUniversalSegmentation

    try:
        model = Mask2FormerForUniversalSegmentation.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise DataError(f"not a Hugging Face Mask2Former folder with config.json and model.safetensors "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", path=path) from exc
    return dict(model.state_dict())


def read_weights(path: str | Path, *, what: str = "Mask2Former weights file") -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors``, a torch file or a Hugging Face model folder), read without
    pickles; a DataError naming the file when it cannot be read or holds something else."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    return torch_file.read_state_dict(path, what=what, wrappers=("model", "state_dict"))


def write_weights(model: nn.Module, path: str | Path) -> None:
    """``model``'s state dict as a ``.safetensors`` file (tensors made contiguous, none shared)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(path))


def load_pretrained(model: nn.Module, path: str | Path, *, backbone: str) -> dict:
    """Load the file at ``path`` into ``model`` (a Mask2Former on ``backbone``); what was loaded, for the record."""
    state = read_weights(path)
    if not any(k.startswith("model.pixel_level_module.") for k in state):
        return _load_backbone(model, state, path, backbone)
    # the loss's class weights are a buffer Hugging Face's files may leave out (rebuilt from the config): a class head
    fit = torch_file.fit_state_dict(model.state_dict(), state, class_heads=CLASS_HEADS)
    if fit.problems:
        raise DataError(f"weights do not fit this Mask2Former on backbone {backbone} ({fit.problems})", path=path)
    model.load_state_dict(fit.load, strict=False)
    return {"from": str(path), "class_heads_reinitialised": bool(fit.reinitialised)}


def _load_backbone(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, backbone: str) -> dict:
    """A classifier's or a bare backbone's state dict into the network's backbone; every backbone tensor must be
    in the file with its shape, and the file may hold nothing more under the backbone's layers."""
    prefix = REGISTRY[backbone].prefix
    theirs = {k.removeprefix(prefix): v for k, v in state.items()}
    own = {k.removeprefix(BACKBONE_PREFIX): v for k, v in model.state_dict().items() if k.startswith(BACKBONE_PREFIX)}
    layers = tuple(f"{name}." for name, _ in model.model.pixel_level_module.encoder.named_children())
    taken = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    wrong = sorted(k for k, v in theirs.items() if k in own and own[k].shape != v.shape)
    missing = sorted(k for k in own if k not in theirs and not k.startswith(OPTIONAL_IN_BACKBONE_FILE)
                     and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in theirs if k not in own and k.startswith(layers))
    if not taken or wrong or missing or unexpected:
        misfit = torch_file.misfit_text(wrong, missing, unexpected) or "no tensor of it in the file"
        raise DataError(f"backbone weights do not fit backbone {backbone} ({misfit}): a backbone "
                        f"file must be Hugging Face's {REGISTRY[backbone].family} classifier or backbone of the "
                        "same size; a whole Mask2Former has names under 'model.pixel_level_module.'", path=path)
    model.load_state_dict({BACKBONE_PREFIX + k: v for k, v in taken.items()}, strict=False)
    return {"from": str(path), "backbone_only": True, "left_out": len(state) - len(taken)}
