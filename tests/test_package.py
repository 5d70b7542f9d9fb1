"""Rules for the whole library, checked on its source: what `python -O` would silently drop, and the
low-level pieces that live in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import cellbench

ROOT = Path(cellbench.__file__).parent


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), filename=str(path))) for path in sorted(ROOT.rglob("*.py"))]


def test_no_assert_in_library_code():
    """An assert vanishes under `python -O`: library code raises a named error instead (STYLE.md)."""
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, tree in _modules()
             for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert found == []


def test_torch_files_are_read_in_one_place():
    """Every torch.load goes through methods/torch_file.py, which passes weights_only=True."""
    calls = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                calls.append((str(path.relative_to(ROOT)), {k.arg: ast.unparse(k.value) for k in node.keywords}))
    assert [where for where, _ in calls] == ["methods/torch_file.py"]
    assert calls[0][1].get("weights_only") == "True"
