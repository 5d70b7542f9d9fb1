"""The low layers stay low: cellbench.files and cellbench.matching import nothing above them."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cellbench

ROOT = Path(cellbench.__file__).parent


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('cellbench'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(("module", "allowed"), [
    ("cellbench.files", ("cellbench.errors", "cellbench.files")),
    ("cellbench.matching", ("cellbench.errors", "cellbench.instances", "cellbench.matching")),
])
def test_low_layer_loads_nothing_above_it(module, allowed):
    loaded = {m for m in _loaded_after(module) if m != "cellbench"}
    assert {m for m in loaded if not m.startswith(allowed)} == set()


def test_staging_left_data_export():
    assert importlib.util.find_spec("cellbench.data.export.staging") is None
    import cellbench.data.export as export

    assert {"staged_dir", "atomic_write_bytes"}.isdisjoint(export.__all__)


def _cellbench_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cellbench"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("cellbench"))
    return out


def test_methods_do_not_import_metrics():
    """Methods tune with cellbench.matching, the layer below both, never with cellbench.metrics."""
    bad = {str(p.relative_to(ROOT)): sorted(m for m in _cellbench_imports(p) if m.startswith("cellbench.metrics"))
           for p in (ROOT / "methods").rglob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}
