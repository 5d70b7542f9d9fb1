"""Reading torch files safely: one place for ``torch.load(weights_only=True)`` and its errors.

Every model directory, checkpoint and pretrained file a method loads goes
through :func:`read_torch_file`: no pickled objects are ever run, and a bad file
(missing, truncated, a pickle, not a zip) becomes a :class:`DataError` that names
it. :func:`read_state_dict` adds the check that the file holds a state dict of
tensors, unwrapping the training checkpoints some authors save around it, and
:func:`check_state_dict` makes the same check on weights found inside a larger
file (nnU-Net's checkpoint).

``weights_only`` keeps pickled objects out, but not every plain value: a string,
a list or a number loads as well, and a library that is handed one where it
expects tensors may do anything with it (a network class named by a tampered
file can be ``exec``). So weights are checked to be tensors before anything
uses them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cellbench.errors import DataError

__all__ = ["check_state_dict", "read_state_dict", "read_torch_file"]


def read_torch_file(path: str | Path, *, what: str, map_location: Any = "cpu", hint: str = "") -> Any:
    """What ``torch.load(path, weights_only=True)`` returns; a DataError naming ``path`` when it cannot.

    ``what`` names the file for the messages ("Mask R-CNN weights file");
    ``hint`` is appended to the unreadable-file message (what to do about it).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path=path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same thing here
        raise DataError(f"{what}: not a readable torch weights file ({_why(exc)}){hint}", path=path) from exc


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
