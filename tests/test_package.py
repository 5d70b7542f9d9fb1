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


def _imported(tree: ast.Module) -> set[str]:
    """Every module an import statement of ``tree`` names (at any depth: function-level imports too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


# Modules that may use hashlib: the file hasher itself (cellbench.files.digest), and two that hash no file
# (runner/experiment.py hashes JSON text for a fingerprint; backbones.state_sha256 hashes tensors of a module
# with no file).
HASHLIB_ALLOWED = {"files/digest.py", "runner/experiment.py", "methods/adapters/cellseg1/backbones.py"}


def test_files_are_hashed_in_one_place():
    users = {str(path.relative_to(ROOT)) for path, tree in _modules() if "hashlib" in _imported(tree)}
    assert users <= HASHLIB_ALLOWED, f"hash files with cellbench.files.file_digest instead: {users - HASHLIB_ALLOWED}"
    backbones = (ROOT / "methods" / "adapters" / "cellseg1" / "backbones.py").read_text()
    assert "hashlib.md5" not in backbones and "fh.read" not in backbones

def test_the_method_framework_never_imports_an_adapter():
    """methods/ holds the framework, methods/adapters/ the methods: adapters import the framework, never the
    other way round (the registry names adapters by string and imports them on demand)."""
    framework = ROOT / "methods"
    found = {}
    for path, tree in _modules():
        if path.parent == framework:
            bad = sorted(m for m in _imported(tree) if m.startswith("cellbench.methods.adapters"))
            if bad:
                found[path.name] = bad
    assert found == {}
    adapters = {p.stem if p.is_file() else p.name for p in (framework / "adapters").iterdir()
                if p.name != "__init__.py" and not p.name.startswith("__")}
    assert {"cellpose", "detection", "stardist", "watershed"} <= adapters
    assert not any((framework / f"{name}.py").exists() or (framework / name).is_dir() for name in adapters)
