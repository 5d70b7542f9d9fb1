"""Every command that reads a bad input exits 2 with a message naming the file and the problem, and writes nothing."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from cellbench.cli.main import main

from . import corpus_sharing as sharing
from .corpus import (
    CASES,
    COMMANDS,
    FAST_WATERSHED,
    argv,
    good_coco_dict,
    write_coco_dataset,
    write_folder_dataset,
)

PAIRS = [(case, command) for case in CASES for command in (case.commands or COMMANDS[case.kind])]
PAIRS += sharing.MODEL_PARAMS
PAIRS += [(case, command) for case in sharing.CASES for command in (case.commands or sharing.COMMANDS[case.kind])]
PARAMS = [pytest.param(case, command, id=f"{case.name}-{command}") for case, command in PAIRS]


def command_line(command: str, kind: str, root: Path, out: str) -> list[str]:
    if command in sharing.ARGV_COMMANDS:
        return sharing.argv(command, root, out)
    return argv(command, kind, root, out)


def shown(path: Path) -> str:
    """A path as error messages print it (bytes that are not UTF-8 as \\xNN)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def tree(root: Path) -> dict[str, tuple]:
    """Everything under ``root``, links not followed: kind and content (or link target) of each entry."""
    found = {}
    with os.scandir(root) as entries:
        for entry in entries:
            rel = os.path.relpath(entry.path, root)
            if entry.is_symlink():
                found[rel] = ("link", os.readlink(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                found[rel] = ("dir",)
                found.update({os.path.join(rel, k): v for k, v in tree(Path(entry.path)).items()})
            else:
                found[rel] = ("file", Path(entry.path).read_bytes())
    return found


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A watershed model directory, trained once for the module."""
    root = tmp_path_factory.mktemp("model")
    write_folder_dataset(root / "data")
    (root / "fast.yaml").write_text(FAST_WATERSHED)
    rc = main(["train", "watershed", "--data", str(root / "data"), "--layout", "folder",
               "--config", str(root / "fast.yaml"), "--out", str(root / "model")])
    assert rc == 0
    return root / "model"


@pytest.fixture
def corpus_root(tmp_path, model_dir) -> Path:
    root = tmp_path / "corpus"
    write_folder_dataset(root / "data")
    write_folder_dataset(root / "good")
    write_coco_dataset(root / "coco")
    write_coco_dataset(root / "good-coco", good_coco_dict())
    (root / "fast.yaml").write_text(FAST_WATERSHED)
    shutil.copytree(model_dir, root / "model")
    return root


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
    names = [c.name for c in CASES + sharing.CASES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(("case", "command"), PARAMS)
def test_bad_input_exits_2_naming_the_file_and_writes_nothing(case, command, corpus_root, capsys, monkeypatch):
    reason = case.skip_reason(corpus_root)
    if reason:
        pytest.skip(reason)
    bad = case.build(corpus_root)
    before = tree(corpus_root)
    # caches go under the corpus (so "writes nothing" covers them), no mirror, and any attempt to reach the
    # network fails at once on a closed local port
    monkeypatch.setenv("CELLBENCH_CACHE", str(corpus_root / "cache"))
    for name in ("CELLBENCH_MIRROR", "CELLBENCH_MODEL_MIRROR", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    if bad.patch is not None:
        bad.patch(monkeypatch)
    try:
        rc = main(command_line(command, case.kind, corpus_root, bad.out))
    finally:
        monkeypatch.undo()
    out, err = capsys.readouterr()
    assert rc == 2, f"exit {rc}; stdout {out!r}; stderr {err!r}"
    assert err.startswith("cellbench: error: "), err
    assert "Traceback" not in err
    assert any(shown(p) in err for p in (bad.path, *bad.also)), f"the message does not name {bad.path}: {err!r}"
    assert re.search(bad.problem, err, re.IGNORECASE), f"the message does not say {bad.problem!r}: {err!r}"
    assert tree(corpus_root) == before, "the command wrote or changed files"
