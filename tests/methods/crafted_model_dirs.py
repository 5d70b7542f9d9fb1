"""Model directories as an attacker writes them, for the tests that every method's loading path refuses them.

Whoever shares a model directory writes every file in it, model.json's checksums included (a checksum is
no signature). The payloads here would leave a marker file behind if they ran.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cellbench.errors import DataError
from cellbench.files import file_digest
from cellbench.methods.model_dir import FORMAT, FORMAT_VERSION, MODEL_FILE, WEIGHTS_DIR, load_model


def payload(marker: Path) -> str:
    """Python source that leaves ``marker`` behind when it runs."""
    return f"open({str(marker)!r}, 'w').write('code from a model directory ran')"


class Exec:
    """Unpickled, this calls ``exec(code)``: what a malicious pickle does."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def torch_bytes(value: object) -> bytes:
    """``value`` as ``torch.save`` writes it."""
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def write_model_dir(folder: Path, method: str, files: dict[str, object], *, config: dict | None = None,
                    version: str | None = None) -> Path:
    """A model directory whose model.json lists every file (bytes, or JSON values) with its checksum."""
    from cellbench.methods import get_method

    weights = folder / WEIGHTS_DIR
    for name, value in files.items():
        (weights / name).parent.mkdir(parents=True, exist_ok=True)
        (weights / name).write_bytes(as_bytes(value))
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "method": method,
              "method_version": version or str(get_method(method).version), "config": config or {},
              "weights": {name: file_digest(weights / name) for name in files}}
    (folder / MODEL_FILE).write_text(json.dumps(record))
    return folder


def refused(folder: Path, marker: Path, file: Path) -> DataError:
    """load_model refuses ``folder`` with a DataError naming ``file``, and no code ran."""
    with pytest.raises(DataError) as info:
        load_model(folder)
    assert not marker.exists(), "code from the model directory ran"
    assert info.value.path == str(file), str(info.value)
    return info.value
