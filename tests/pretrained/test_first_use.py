"""A zipped model folder with no published checksum is trusted on first use only once it has unpacked."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile

import pytest

from cellbench.errors import DataError
from cellbench.pretrained import add_pretrained, entries, get_pretrained, models_dir, pull_pretrained
from cellbench.remote import TRUST_FILE, RemoteFile


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("config.json", "{}")
    return buf.getvalue()


@pytest.fixture
def unpublished_zip(monkeypatch, tmp_path):
    """A StarDist-like entry whose zip has no checksum, served from a mirror folder; returns the mirror."""
    base = get_pretrained("stardist/2D_versatile_fluo")
    remote = RemoteFile(base.files[0].file_name, base.files[0].url)
    entry = dataclasses.replace(base, files=(remote,), checksum_published=False)
    monkeypatch.setattr(entries, "REGISTRY", tuple(entry if e is base else e for e in entries.REGISTRY))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    return mirror, remote


def _ledger() -> dict:
    path = models_dir() / TRUST_FILE
    return json.loads(path.read_text())["files"] if path.exists() else {}


def test_a_first_copy_that_does_not_unpack_is_removed_not_trusted(unpublished_zip, monkeypatch):
    mirror, remote = unpublished_zip
    (mirror / remote.file_name).write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DataError, match="not a zip archive"):
        pull_pretrained("stardist/2D_versatile_fluo", mirror=str(mirror), progress=False)
    assert _ledger() == {} and not (models_dir() / "stardist/2D_versatile_fluo" / remote.file_name).exists()
    genuine = _zip()
    (mirror / remote.file_name).write_bytes(genuine)
    folder = pull_pretrained("stardist/2D_versatile_fluo", mirror=str(mirror), progress=False)
    assert (folder / "config.json").is_file()
    assert _ledger()[remote.url]["sha256"] == hashlib.sha256(genuine).hexdigest()


def test_a_file_added_by_hand_that_does_not_unpack_is_not_trusted(unpublished_zip, tmp_path):
    _, remote = unpublished_zip
    bad = tmp_path / remote.file_name
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a zip archive"):
        add_pretrained("stardist/2D_versatile_fluo", [bad])
    assert _ledger() == {}
    bad.write_bytes(_zip())
    add_pretrained("stardist/2D_versatile_fluo", [bad])
    assert _ledger()[remote.url]["source"] == str(bad)
