"""The torch thread rule every torch method shares (``cellbench.methods.device.torch_threads``)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cellbench.methods.device import torch_threads  # noqa: E402


def test_threads_are_set_inside_and_restored_after():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("a failing training")
    assert torch.get_num_threads() == before


def test_zero_leaves_torch_alone():
    before = torch.get_num_threads()
    with torch_threads(0):
        assert torch.get_num_threads() == before
