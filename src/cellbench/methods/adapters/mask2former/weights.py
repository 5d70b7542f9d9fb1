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

A Swin's tensors in either kind of file may carry the names ``transformers`` 4
wrote (``attention.self.query``, ``intermediate.dense``; the Hub's Swin
classifiers and Mask2Former COCO files, and what ``save_pretrained`` still
writes): :func:`swin_names` maps them to ``transformers`` 5's first, as
``from_pretrained`` does.

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

__all__ = ["load_pretrained", "read_weights", "resolve_pretrained", "swin_names", "write_weights"]

#: Backbone parameters its outputs never pass through: the last LayerNorm of the SwinModel inside transformers 5's
#: SwinBackbone, which transformers 4's SwinBackbone (and so its Mask2Former files) did not have.
UNUSED_IN_BACKBONE = ("swin.layernorm.",)
#: Backbone parameters a classifier's file need not hold (Swin's per-output norms are the backbone's own).
OPTIONAL_IN_BACKBONE_FILE = ("hidden_states_norms.", *UNUSED_IN_BACKBONE)
#: transformers 4 -> 5 names of a Swin's tensors, applied in turn to whole name parts, in the order of
#: transformers 5's own conversion mapping for "swin" (``attention.output.dense`` before ``output.dense``).
SWIN_RENAMES = (
    ("attention.self.query", "attention.q_proj"),
    ("attention.self.key", "attention.k_proj"),
    ("attention.self.value", "attention.v_proj"),
    ("attention.self.relative_position_bias_table", "attention.relative_position_bias.relative_position_bias_table"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
)
#: transformers 4's SwinBackbone held the Swin model's parts itself; transformers 5's holds a SwinModel, ``swin.``
SWIN_MODEL_PARTS = ("embeddings.", "encoder.")


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


def swin_names(state: Mapping[str, torch.Tensor], *, under: str = "",
               path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """``state`` with the names transformers 4 gave a Swin's tensors (under ``under``: a backbone's or a
    classifier's names) renamed as transformers 5 names them, as its ``from_pretrained`` does; names that are
    transformers 5's already stay. ``relative_position_index`` (a buffer transformers 5 rebuilds from the window
    size) is dropped.

    >>> import torch
    >>> sorted(swin_names({"swin.encoder.layers.0.blocks.0.attention.output.dense.weight": torch.zeros(1),
    ...                    "swin.encoder.layers.0.blocks.0.output.dense.bias": torch.zeros(1),
    ...                    "swin.encoder.layers.0.blocks.0.attention.self.relative_position_index": torch.zeros(1)}))
    ['swin.encoder.layers.0.blocks.0.attention.o_proj.weight', 'swin.encoder.layers.0.blocks.0.mlp.fc2.bias']
    >>> list(swin_names({"model.pixel_level_module.encoder.encoder.layers.0.blocks.0.intermediate.dense.weight":
    ...                  torch.zeros(1)}, under="model.pixel_level_module.encoder."))
    ['model.pixel_level_module.encoder.swin.encoder.layers.0.blocks.0.mlp.fc1.weight']
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(under):
            if key.endswith(".relative_position_index"):
                continue
            name = key.removeprefix(under)
            name = f".{'swin.' if name.startswith(SWIN_MODEL_PARTS) else ''}{name}."
            for old, new in SWIN_RENAMES:
                name = name.replace(f".{old}.", f".{new}.")
            key = under + name[1:-1]
        if key in renamed:
            raise DataError(f"two tensors are named {key!r} once transformers 4's Swin names are mapped to "
                            "transformers 5's", path=path)
        renamed[key] = value
    return renamed


def load_pretrained(model: nn.Module, path: str | Path, *, backbone: str) -> dict:
    """Load the file at ``path`` into ``model`` (a Mask2Former on ``backbone``); what was loaded, for the record.

    A Swin's tensors may have the names transformers 4 wrote (the Hub's Swin classifiers and Mask2Former COCO
    files): :func:`swin_names` maps them first.
    """
    state = read_weights(path)
    in_file = len(state)
    whole = any(k.startswith("model.pixel_level_module.") for k in state)
    if REGISTRY[backbone].family == "swin":
        state = swin_names(state, under=BACKBONE_PREFIX if whole else "", path=path)
    if not whole:
        return _load_backbone(model, state, path, backbone, in_file=in_file)
    # the loss's class weights are a buffer Hugging Face's files may leave out (rebuilt from the config): a class head
    fit = torch_file.fit_state_dict(model.state_dict(), state, class_heads=CLASS_HEADS,
                                    new_heads=[BACKBONE_PREFIX + name for name in UNUSED_IN_BACKBONE])
    if fit.problems:
        raise DataError(f"weights do not fit this Mask2Former on backbone {backbone} ({fit.problems})", path=path)
    model.load_state_dict(fit.load, strict=False)
    return {"from": str(path), "class_heads_reinitialised": bool(fit.reinitialised)}


def _load_backbone(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, backbone: str, *,
                   in_file: int) -> dict:
    """A classifier's or a bare backbone's state dict into the network's backbone; every backbone tensor must be
    in the file with its shape, and the file may hold nothing more under the backbone's layers. ``left_out``
    counts the file's tensors not loaded (of ``in_file``: the classifier, Swin's dropped position indices)."""
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
    return {"from": str(path), "backbone_only": True, "left_out": in_file - len(taken)}
