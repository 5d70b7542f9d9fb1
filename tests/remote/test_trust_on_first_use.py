"""Trust on first use, made honest: only a whole, usable first copy is recorded, with the URL it came from."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import pytest

from cellbench.errors import DataError
from cellbench.remote import TRUST_FILE, RemoteFile, fetch_file, fetching

PAYLOAD = os.urandom(300_000)
OTHER = os.urandom(300_000)  # what the server holds after the file changed


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remote(server, mode="files", **checks) -> RemoteFile:
    (server.root / "w.bin").write_bytes(PAYLOAD)
    return RemoteFile("w.bin", f"{server.url(mode)}/w.bin", **checks)


def _ledger(cache) -> dict:
    path = cache / TRUST_FILE
    return json.loads(path.read_text())["files"] if path.exists() else {}


def _left(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("mode", ["no-length-cut", "no-length"])
def test_a_body_whose_end_cannot_be_checked_is_not_trusted(server, tmp_path, mode):
    """No Content-Length, no chunks, no checksum: a cut transfer looks like a whole one, so neither is taken."""
    remote = _remote(server, mode)
    with pytest.raises(DataError, match="no Content-Length and no chunked body") as err:
        fetch_file(remote, tmp_path / "cache", progress=False)
    assert remote.url in str(err.value)
    assert _ledger(tmp_path / "cache") == {} and _left(tmp_path / "cache") == []


def test_the_same_body_with_a_checksum_is_taken(server, tmp_path):
    remote = _remote(server, "no-length", sha256=_sha(PAYLOAD))
    assert fetch_file(remote, tmp_path / "cache", progress=False).read_bytes() == PAYLOAD
    cut = RemoteFile("w.bin", f"{server.url('no-length-cut')}/w.bin", sha256=_sha(PAYLOAD))
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_file(cut, tmp_path / "other", progress=False)


def test_chunked_bodies_are_checked_for_their_last_chunk(server, tmp_path):
    with pytest.raises(DataError, match="interrupted"):
        fetch_file(_remote(server, "chunked-cut"), tmp_path / "cut", progress=False)
    assert _ledger(tmp_path / "cut") == {} and _left(tmp_path / "cut") == []
    remote = _remote(server, "chunked")
    assert fetch_file(remote, tmp_path / "whole", progress=False).read_bytes() == PAYLOAD
    assert _ledger(tmp_path / "whole")[remote.url]["sha256"] == _sha(PAYLOAD)


def test_without_a_checksum_a_cut_download_starts_again_from_the_first_byte(server, tmp_path):
    """Resuming would join two responses that nothing can check: the first half of one file and the second
    half of another, recorded as trusted."""
    remote = _remote(server, "cut-once")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="interrupted"):
        fetch_file(remote, cache, progress=False)
    assert _left(cache) == []  # no .part kept to resume
    (server.root / "w.bin").write_bytes(OTHER)  # the file changes between the two requests
    assert fetch_file(remote, cache, progress=False).read_bytes() == OTHER
    assert [r for _, r in server.requests] == [None, None]  # no Range request
    assert _ledger(cache)[remote.url]["sha256"] == _sha(OTHER)


def test_a_partial_file_left_behind_is_not_resumed_without_a_checksum(server, tmp_path):
    remote = _remote(server)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "w.bin.part").write_bytes(OTHER[:1000])  # a killed download of another version
    assert fetch_file(remote, cache, progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/files/w.bin", None)]


def test_with_a_checksum_a_cut_download_resumes(server, tmp_path):
    remote = _remote(server, "cut-once", sha256=_sha(PAYLOAD))
    with pytest.raises(DataError, match="interrupted"):
        fetch_file(remote, tmp_path / "cache", progress=False)
    assert fetch_file(remote, tmp_path / "cache", progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1][1] == f"bytes={len(PAYLOAD) // 2}-"


def test_trust_is_recorded_only_once_the_file_is_used(server, tmp_path, caplog):
    remote = _remote(server)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="cannot load"):
        with fetching(remote, cache, progress=False) as path:
            assert path.read_bytes() == PAYLOAD and _ledger(cache) == {}
            raise ValueError("cannot load it")
    assert _left(cache) == [] and "removed: it was not verified and could not be used" in caplog.text
    (server.root / "w.bin").write_bytes(OTHER)  # the genuine file, taken now
    with fetching(remote, cache, progress=False) as path:
        assert path.read_bytes() == OTHER
    assert _ledger(cache)[remote.url]["sha256"] == _sha(OTHER)


def test_a_verified_file_stays_when_its_use_fails(server, tmp_path):
    remote = _remote(server, sha256=_sha(PAYLOAD))
    with pytest.raises(ValueError):
        with fetching(remote, tmp_path / "cache", progress=False):
            raise ValueError("unrelated")
    assert _left(tmp_path / "cache") == ["w.bin"]


def test_the_record_names_the_url_the_bytes_came_from(server, tmp_path, caplog):
    remote = _remote(server, "redirect")
    caplog.set_level(logging.WARNING)
    fetch_file(remote, tmp_path / "cache", progress=False)
    final = f"{server.url()}/w.bin"
    assert _ledger(tmp_path / "cache")[remote.url]["source"] == final
    assert f"from {final}" in caplog.text and "its publisher gives no checksum" in caplog.text
