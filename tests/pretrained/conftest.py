"""Pretrained-registry tests: the fake registry helper and the local server are importable from here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
for folder in (HERE, HERE.parent / "remote"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from fake_registry import install_fake_registry  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, tmp_path):
    """Every test gets its own cache; no mirror from the environment."""
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("CELLBENCH_MIRROR", "CELLBENCH_MODEL_MIRROR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_mirror(monkeypatch, tmp_path):
    """(mirror folder, {entry: {file_name: bytes}}) with the registry's checksums set to the fake files'."""
    mirror = tmp_path / "mirror"
    return mirror, install_fake_registry(monkeypatch, mirror)
