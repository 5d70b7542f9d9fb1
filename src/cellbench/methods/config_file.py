"""Method config files: the YAML or JSON mapping that ``cellbench train --config`` and experiments read.

One reader for both, so a committed ``examples/configs/<dataset>/<method>.yaml`` means the
same settings whether it is trained on the command line or named by an experiment's
``config_file``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cellbench.errors import DataError

__all__ = ["read_config_file"]


def read_config_file(path: str | Path) -> dict:
    """A method config file: a YAML or JSON mapping (``.json`` read as JSON, anything else as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("config file not found", path=path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read config file ({exc})", path=path) from exc
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as exc:  # json and yaml parse errors
        raise DataError(f"cannot parse config file ({type(exc).__name__}: {exc})", path=path) from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise DataError(f"config file must hold a mapping of settings, got {type(values).__name__}", path=path)
    return values
