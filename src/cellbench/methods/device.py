"""Which torch device a method runs on: one rule for every torch method."""

from __future__ import annotations

from typing import Any

__all__ = ["torch_device"]


def torch_device(name: str = "auto") -> Any:
    """``auto``: CUDA when torch has it, else the CPU; any other name (``cpu``, ``cuda:1``) as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
