"""Fixtures of the gallery tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gallery_helpers import tiny_run  # noqa: E402


@pytest.fixture(scope="session")
def scored(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, model directory) of a watershed model trained and scored by a tiny run; read only."""
    return tiny_run(tmp_path_factory.mktemp("scored"))
