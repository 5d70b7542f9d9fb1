"""Seeding a torch method's training: one function for the random sources every torch method draws from."""

from __future__ import annotations

import random

import numpy as np

__all__ = ["seed_torch"]


def seed_torch(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA) with ``seed``."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
