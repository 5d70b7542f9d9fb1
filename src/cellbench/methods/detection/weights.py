"""Pretrained weights for a detector: a whole detector's checkpoint.

``pretrained`` in a detector's config names a file, or a name of the
pretrained-model registry (:func:`resolve_weights`). :func:`load_pretrained`
loads a whole detector (as torchvision's COCO checkpoints): every parameter
is taken except the class-specific last layers when the file has another
number of classes, the usual transfer recipe. Anything that does not fit is
a DataError naming the file and what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cellbench.errors import DataError
from cellbench.methods import torch_file

__all__ = ["load_pretrained", "read_state_dict", "resolve_weights"]


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
    """A state dict read safely, unwrapped from torchvision's training-reference checkpoint
    (``{"model": ..., "optimizer": ...}``); a DataError names a bad file."""
    return torch_file.read_state_dict(path, what=what, wrappers=("model",))


def _listed(keys: Sequence[str]) -> str:
    return f"{list(keys[:3])}{' ...' if len(keys) > 3 else ''}"


def load_pretrained(model: nn.Module, path: str | Path, *, class_heads: Sequence[str] = (),
                    hint: str = "") -> dict:
    """Load ``path`` into a torchvision-style detector; what was loaded, for the record.

    ``class_heads``: name prefixes of the parameters that depend on the number
    of classes, re-initialised when the file's shapes differ; ``hint`` ends the
    error message for a whole detector that does not fit ("COCO weights need
    backbone resnet50").
    """
    state = read_state_dict(path)
    own = model.state_dict()
    skipped = sorted(k for k, v in state.items()
                     if k.startswith(tuple(class_heads)) and k in own and own[k].shape != v.shape)
    wrong = sorted(k for k, v in state.items() if k in own and k not in skipped and own[k].shape != v.shape)
    missing = sorted(set(own) - set(state) - {k for k in own if k.startswith(tuple(class_heads))})
    unexpected = sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        problems = [f"{name}: {_listed(keys)}"
                    for name, keys in (("shape differs", wrong), ("missing", missing), ("unexpected", unexpected))
                    if keys]
        raise DataError(f"weights do not fit this {type(model).__name__} ({'; '.join(problems)}){hint}", path=path)
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return {"from": str(path), "class_heads_reinitialised": bool(skipped)}
