"""`cellbench models list|pull|path|verify|add`, against a fake registry served from a mirror folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cellbench.cli.main import main

sys.path.insert(0, str(Path(__file__).parents[1] / "pretrained"))
from fake_registry import install_fake_registry  # noqa: E402


@pytest.fixture
def mirror(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("CELLBENCH_MIRROR", "CELLBENCH_MODEL_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "mirror"
    install_fake_registry(monkeypatch, folder)
    return folder


def test_list_json_and_method_filter(mirror, capsys):
    assert main(["models", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    by_name = {e["name"]: e for e in entries}
    assert len(entries) == 22 and not any(e["cached"] for e in entries)  # 13 + 5 YOLO11-seg sizes + 4 ImageNet
    vit_b = by_name["sam/vit_b"]
    assert vit_b["method"] == "sam" and vit_b["checksum_published"] and vit_b["licence"] == "Apache-2.0"
    assert vit_b["files"][0]["url"] == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert vit_b["files"][0]["checksum"].startswith("sha256:")
    assert by_name["cellpose/cyto3"]["files"][0]["checksum"] is None
    assert by_name["cellpose/nuclei"]["training"]["objects"] == "nuclei"
    assert main(["models", "list", "--method", "stardist", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == [
        "stardist/2D_versatile_fluo", "stardist/2D_versatile_he", "stardist/2D_paper_dsb2018"]
    assert main(["models", "list", "--method", "cellpose"]) == 0
    out = capsys.readouterr().out
    assert "cellpose/cyto3  [cellpose]" in out and "trusted on first use, not cached" in out


def test_pull_path_verify(mirror, monkeypatch, tmp_path, capsys, caplog):
    cache = tmp_path / "cache" / "models"
    assert main(["models", "path", "cellpose/cyto3"]) == 1
    assert "not in the cache" in capsys.readouterr().err
    assert main(["models", "pull", "cellpose/cyto3"]) == 2  # no mirror, no network
    err = capsys.readouterr().err
    assert err.startswith("cellbench: error: https://www.cellpose.org/models/cyto3: ")
    assert "CELLBENCH_MODEL_MIRROR" in err
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    assert main(["models", "pull", "cellpose/cyto3", "stardist/2D_versatile_fluo"]) == 0
    out = capsys.readouterr().out
    assert out.split() == [str(cache / "cellpose/cyto3/cyto3"),
                           str(cache / "stardist/2D_versatile_fluo/2D_versatile_fluo")]
    assert caplog.text.count("not verified") == 2  # the two Cellpose files, trusted on first use
    assert main(["models", "path", "cyto3"]) == 0
    assert capsys.readouterr().out.split() == [str(cache / "cellpose/cyto3/cyto3"),
                                               str(cache / "cellpose/cyto3/size_cyto3.npy")]
    assert main(["models", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == 4 and "sha256 recorded at first download" in out and "published checksum" in out
    (cache / "cellpose/cyto3/size_cyto3.npy").write_bytes(b"tampered")
    assert main(["models", "verify", "cellpose/cyto3"]) == 1
    out = capsys.readouterr().out
    assert "FAILED  cellpose/cyto3" in out and "size mismatch" in out


def test_add(mirror, tmp_path, capsys):
    assert main(["models", "add", "sam/vit_l", "--file", str(mirror / "sam_vit_l_0b3195.pth")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cache/models/sam/vit_l/sam_vit_l_0b3195.pth")
    bad = tmp_path / "sam_vit_b_01ec64.pth"
    bad.write_bytes(b"not the checkpoint")
    assert main(["models", "add", "sam/vit_b", "--file", str(bad)]) == 2
    assert "not a good copy" in capsys.readouterr().err
    assert main(["models", "path", "sam/vit_b"]) == 1
    assert main(["models", "add", "nope", "--file", str(bad)]) == 2
    assert "unknown pretrained model 'nope'" in capsys.readouterr().err
