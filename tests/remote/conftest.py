"""Download tests: this folder goes on sys.path so the tests import the local server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from local_server import serve  # noqa: E402


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    with serve(root) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    for name in ("CELLBENCH_MIRROR", "CELLBENCH_MODEL_MIRROR"):
        monkeypatch.delenv(name, raising=False)
