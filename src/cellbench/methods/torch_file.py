"""Reading torch files safely: one place for ``torch.load(weights_only=True)``, safetensors and their errors.

Every model directory, checkpoint and pretrained file a method loads goes
through :func:`read_torch_file`: no pickled objects are ever run, and a bad file
(missing, truncated, a pickle, not a zip) becomes a :class:`DataError` that names
it. A ``*.safetensors`` file (the Hugging Face Hub's format: timm's and
``transformers``' classifiers) is read by ``safetensors`` itself, whichever
torch is installed: ``torch.load`` hands such paths to safetensors only in
releases from 2026 on (pytorch/pytorch#170592), and the extras allow torch 2.1.
:func:`read_state_dict` adds the check that the file holds a state dict of
tensors, unwrapping the training checkpoints some authors save around it, and
:func:`check_state_dict` makes the same check on weights found inside a larger
file (nnU-Net's checkpoint). :func:`fit_state_dict` says how a pretrained state
dict fits a model by name before it is loaded (class heads of another size,
heads the file's network lacks), and :func:`misfit_text` words what does not fit.

``weights_only`` keeps pickled objects out, but not every plain value: a string,
a list or a number loads as well, and a library that is handed one where it
expects tensors may do anything with it (a network class named by a tampered
file can be ``exec``). So weights are checked to be tensors before anything
uses them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellbench.errors import DataError

__all__ = ["StateFit", "check_state_dict", "fit_state_dict", "misfit_text", "read_state_dict", "read_torch_file"]


def read_torch_file(path: str | Path, *, what: str, map_location: Any = "cpu", hint: str = "") -> Any:
    """What ``torch.load(path, weights_only=True)`` returns, or for a ``*.safetensors`` path its tensors by name;
    a DataError naming ``path`` when it cannot.

    ``what`` names the file for the messages ("Mask R-CNN weights file");
    ``hint`` is appended to the unreadable-file message (what to do about it).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path=path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, what=what, map_location=map_location, hint=hint)
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same thing here
        raise DataError(f"{what}: not a readable torch weights file ({_why(exc)}){hint}", path=path) from exc


def _read_safetensors(path: Path, *, what: str, map_location: Any, hint: str) -> dict[str, Any]:
    """The tensors of a safetensors file, on ``map_location`` (a device or its name); a DataError naming it."""
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise DataError(f"{what}: reading a .safetensors file needs the safetensors package "
                        "(pip install safetensors)", path=path) from exc
    try:
        return load_file(path, device=str(map_location or "cpu"))
    except Exception as exc:  # safetensors' SafetensorError (bad header, truncated file) and OS errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{what}: not a readable safetensors file ({first}){hint}", path=path) from exc


def _why(exc: Exception) -> str:
    """One line on why torch could not read a file; its weights-only refusal is a page of advice, cut to the cause."""
    text = str(exc)
    refused = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: Please use|$)", text, flags=re.MULTILINE)
    if refused:
        return f"it holds pickled Python objects, which cellbench never loads: {refused.group(1).strip()}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"


def read_state_dict(path: str | Path, *, what: str, wrappers: Sequence[str] = (),
                    map_location: Any = "cpu") -> dict[str, Any]:
    """A state dict of tensors read safely from ``path``; a DataError naming the file otherwise.

    ``wrappers`` are keys of a training checkpoint that holds the state dict
    (torchvision's reference scripts save ``{"model": ..., "optimizer": ...}``,
    MEDIAR ``{"model_state_dict": ...}``); the first present is unwrapped.
    """
    state = read_torch_file(path, what=what, map_location=map_location)
    for key in wrappers:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    return check_state_dict(state, what=what, path=path)


def check_state_dict(state: Any, *, what: str, path: str | Path | None = None) -> dict[str, Any]:
    """``state`` as a dict when it is a state dict (names -> tensors); a DataError naming ``path`` otherwise.

    >>> import torch
    >>> sorted(check_state_dict({"w": torch.zeros(1)}, what="weights"))
    ['w']
    >>> check_state_dict("print('hi')", what="weights", path="m.pt")
    Traceback (most recent call last):
    cellbench.errors.DataError: m.pt: weights: not a state dict of tensors (a str)
    """
    import torch

    if not isinstance(state, Mapping):
        raise DataError(f"{what}: not a state dict of tensors (a {type(state).__name__})", path=path)
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise DataError(f"{what}: not a state dict of tensors ({key!r:.60} is a {type(value).__name__})",
                            path=path)
    return dict(state)


def misfit_text(wrong: Sequence[str] = (), missing: Sequence[str] = (), unexpected: Sequence[str] = ()) -> str:
    """What does not fit, as weights errors word it: up to three names of each kind ("" when all fits).

    >>> misfit_text(wrong=["a.w"], missing=["b", "c", "d", "e"])
    "shape differs: ['a.w']; missing: ['b', 'c', 'd'] ..."
    """
    return "; ".join(f"{name}: {list(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                     for name, keys in (("shape differs", wrong), ("missing", missing), ("unexpected", unexpected))
                     if keys)


@dataclass(frozen=True)
class StateFit:
    """How a pretrained state dict fits a model (:func:`fit_state_dict`).

    Attributes:
        load: what to load, with ``strict=False``.
        reinitialised: class-head tensors of another shape in the file: they keep their initialisation.
        new_initialised: the model's tensors under new heads that the file lacks (they keep theirs too).
        left_out: the file's tensors under new heads that the model lacks.
        problems: what does not fit (:func:`misfit_text`); "" when the file fits.
    """

    load: dict[str, Any]
    reinitialised: tuple[str, ...]
    new_initialised: int
    left_out: int
    problems: str


def fit_state_dict(own: Mapping[str, Any], state: Mapping[str, Any], *, class_heads: Sequence[str] = (),
                   new_heads: Sequence[str] = ()) -> StateFit:
    """How ``state`` (a pretrained file's) fits a model whose state dict is ``own``, matched by name.

    Every tensor of the file must be the model's, with its shape, and every
    tensor of the model must be in the file, except: under ``class_heads``
    (name prefixes of the layers sized by the number of classes) a tensor of
    another shape, or none, keeps the model's initialisation, the usual
    transfer recipe; under ``new_heads`` (heads the file's network may not
    have, or have and the model not: MS R-CNN's MaskIoU head in a Mask R-CNN
    file) what one side lacks is left to it.

    >>> import torch
    >>> own = {"body.w": torch.zeros(2), "cls.w": torch.zeros(3), "iou.w": torch.zeros(1)}
    >>> fit = fit_state_dict(own, {"body.w": torch.ones(2), "cls.w": torch.ones(91)}, class_heads=["cls."],
    ...                      new_heads=["iou."])
    >>> sorted(fit.load), fit.reinitialised, fit.new_initialised, fit.problems
    (['body.w'], ('cls.w',), 1, '')
    >>> fit_state_dict(own, {"body.w": torch.ones(3)}).problems
    "shape differs: ['body.w']; missing: ['cls.w', 'iou.w']"
    """
    fresh, heads = tuple(new_heads), tuple(class_heads)
    left_out = {k for k in state if fresh and k.startswith(fresh) and k not in own}
    kept_new = {k for k in own if fresh and k.startswith(fresh) and k not in state}
    state = {k: v for k, v in state.items() if k not in left_out}
    skipped = sorted(k for k, v in state.items() if k.startswith(heads) and k in own and own[k].shape != v.shape)
    wrong = sorted(k for k, v in state.items() if k in own and k not in skipped and own[k].shape != v.shape)
    missing = sorted(set(own) - set(state) - {k for k in own if k.startswith(heads)} - kept_new)
    unexpected = sorted(set(state) - set(own))
    return StateFit(load={k: v for k, v in state.items() if k not in skipped}, reinitialised=tuple(skipped),
                    new_initialised=len(kept_new), left_out=len(left_out),
                    problems=misfit_text(wrong, missing, unexpected))
