"""Downloads stop at the file's size, and a file that does not match is downloaded once, not twice."""

from __future__ import annotations

import hashlib
import os
import urllib.request

import pytest

from cellbench.errors import DataError
from cellbench.remote import TRUST_FILE, RemoteFile, fetch_file

SIZE = 1000
PAYLOAD = os.urandom(SIZE)
FLOOD = PAYLOAD + bytes(5 << 20)  # what a hostile server sends instead: the file, then 5 MiB more


class _Counting:
    """An opener that counts the body bytes the downloader reads."""

    def __init__(self) -> None:
        self.read = 0

    def __call__(self, request, timeout):
        return _CountedResponse(urllib.request.urlopen(request, timeout=timeout), self)


class _CountedResponse:
    def __init__(self, response, counter: _Counting) -> None:
        self._response, self._counter = response, counter

    def __getattr__(self, name):
        return getattr(self._response, name)

    def read1(self, n=-1):
        block = self._response.read1(n)
        self._counter.read += len(block)
        return block

    def read(self, n=-1):
        block = self._response.read(n)
        self._counter.read += len(block)
        return block

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._response.close()


def _left(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("checks", [{"sha256": hashlib.sha256(PAYLOAD).hexdigest()}, {}])
def test_a_body_past_the_published_size_is_cut_off_there(server, tmp_path, checks):
    (server.root / "w.bin").write_bytes(FLOOD)
    remote = RemoteFile("w.bin", f"{server.url('no-length')}/w.bin", size=SIZE, **checks)
    counting = _Counting()
    with pytest.raises(DataError, match="sent more than the 1,000 bytes the file has; stopped there") as err:
        fetch_file(remote, tmp_path / "cache", progress=False, opener=counting)
    assert "removed the bad copy" in str(err.value)
    assert counting.read <= SIZE + 1  # not 5 MiB
    assert _left(tmp_path / "cache") == []
    assert len(server.requests) == 1


def test_a_content_length_past_the_size_is_refused_before_the_body(server, tmp_path):
    (server.root / "w.bin").write_bytes(FLOOD)
    remote = RemoteFile("w.bin", f"{server.url()}/w.bin", size=SIZE, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    counting = _Counting()
    with pytest.raises(DataError, match=rf"announces {len(FLOOD):,} bytes \(Content-Length\), more than the 1,000"):
        fetch_file(remote, tmp_path / "cache", progress=False, opener=counting)
    assert counting.read == 0 and _left(tmp_path / "cache") == []


def test_the_size_recorded_at_first_use_caps_later_downloads(server, tmp_path):
    (server.root / "w.bin").write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    fetch_file(RemoteFile("w.bin", f"{server.url()}/w.bin"), cache, progress=False)  # recorded: 1000 bytes
    (cache / "w.bin").unlink()
    (server.root / "w.bin").write_bytes(FLOOD)
    remote = RemoteFile("w.bin", f"{server.url()}/w.bin")
    counting = _Counting()
    with pytest.raises(DataError, match="more than the 1,000"):
        fetch_file(remote, cache, progress=False, opener=counting)
    assert counting.read == 0 and _left(cache) == [TRUST_FILE]


def test_a_mirror_file_past_the_size_is_not_copied(server, tmp_path, caplog):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "w.bin").write_bytes(FLOOD)
    (server.root / "w.bin").write_bytes(PAYLOAD)
    remote = RemoteFile("w.bin", f"{server.url()}/w.bin", size=SIZE, md5=hashlib.md5(PAYLOAD).hexdigest())
    path = fetch_file(remote, tmp_path / "cache", mirror=str(mirror), progress=False)
    assert path.read_bytes() == PAYLOAD  # the mirror's copy refused by its size, the publisher's taken
    assert f"is {len(FLOOD):,} bytes, more than the 1,000 the file has; refused before downloading" in caplog.text


def test_a_checksum_mismatch_is_downloaded_once(server, tmp_path):
    (server.root / "w.bin").write_bytes(PAYLOAD)
    remote = RemoteFile("w.bin", f"{server.url()}/w.bin", md5="0" * 32)
    with pytest.raises(DataError, match="checksum mismatch") as err:
        fetch_file(remote, tmp_path / "cache", progress=False)
    assert str(err.value).count("checksum mismatch") == 1
    assert server.requests == [("/files/w.bin", None)]  # not retried: the server sent it whole
    assert _left(tmp_path / "cache") == []
