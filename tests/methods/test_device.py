"""The torch thread rule every torch method shares (``cellbench.methods.device``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

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


SRC = Path(__file__).resolve().parents[2] / "src" / "cellbench"
#: Modules allowed to set torch's thread count otherwise, and why.
SETS_THREADS = {
    "methods/device.py": "the rule itself",
    "methods/adapters/yolo/runtime.py": "gives back the count Ultralytics changes for its own runs (YOLO has no threads field)",
}


def test_no_method_sets_threads_but_through_the_config_decorator():
    """Methods do not call torch_threads or set_num_threads themselves, and only the GUI's job environment
    names the thread variables (for the libraries without a threads field: see cellbench.gui.jobs)."""
    calls, variables = [], []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        text = path.read_text()
        sets = re.search(r"torch_threads\(|set_num_threads\(", text)
        if name.startswith("methods/") and name not in SETS_THREADS and sets:
            calls.append(name)
        if name != "gui/jobs.py" and re.search(r"(OMP|MKL|OPENBLAS)_NUM_THREADS", text):
            variables.append(name)
    assert calls == [] and variables == []


def test_every_method_with_a_threads_field_trains_and_predicts_on_it():
    from cellbench.errors import DataError
    from cellbench.methods import METHODS, get_method

    with_field = []
    for name in sorted(METHODS):
        try:
            cls = get_method(name)
        except DataError:  # its extra is not installed here (test_contract says which)
            continue
        if "threads" in {f.name for f in dataclasses.fields(cls.Config)}:
            with_field.append(name)
            assert getattr(cls.train, "runs_on_config_threads", False), f"{name}.train: add @on_config_threads"
            assert getattr(cls.predict, "runs_on_config_threads", False), f"{name}.predict: add @on_config_threads"
    assert {"cellpose", "unet", "maunet", "nnunet", "sam", "cellseg1"} <= set(with_field)
