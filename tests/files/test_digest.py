"""file_digest / file_digests: the one file hasher, checked against hashlib."""

from __future__ import annotations

import hashlib

import pytest

import cellbench.files.digest as digest_module
from cellbench.files import file_digest, file_digests

PAYLOAD = bytes(range(256)) * 41  # 10,496 bytes: several blocks with the block size below


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(digest_module, "_BLOCK", 1000)  # force reads across block boundaries


@pytest.mark.parametrize("algorithm", ["sha256", "md5", "sha1"])
def test_file_digest_matches_hashlib(tmp_path, small_blocks, algorithm):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert file_digest(path, algorithm) == hashlib.new(algorithm, PAYLOAD).hexdigest()


def test_default_is_sha256_and_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert file_digest(path) == hashlib.sha256(b"").hexdigest()


def test_several_algorithms_in_one_read(tmp_path, small_blocks, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    opened = []
    real_open = open
    monkeypatch.setattr(digest_module, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k),
                        raising=False)
    got = file_digests(path, ("sha256", "md5"))
    assert got == {"sha256": hashlib.sha256(PAYLOAD).hexdigest(), "md5": hashlib.md5(PAYLOAD).hexdigest()}
    assert list(got) == ["sha256", "md5"] and opened == [path]


def test_refuses_no_algorithm_and_unknown_ones(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="no hash algorithm"):
        file_digests(path, ())
    with pytest.raises(ValueError):
        file_digest(path, "not-a-hash")
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "missing")
