"""Runner test fixtures. This folder goes on sys.path so that tests (and their child
processes and Ray workers, through PYTHONPATH) import fake_methods and the helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from runner_helpers import write_tiny_dsb  # noqa: E402


@pytest.fixture
def fake_methods_path(monkeypatch):
    """Make ``fake_methods`` importable in child processes too."""
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    return HERE


@pytest.fixture
def tiny_data(tmp_path):
    return write_tiny_dsb(tmp_path / "data")
