"""The one downloader, against a local HTTP server on 127.0.0.1 (no test reaches the internet)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os

import pytest

from cellbench.errors import DataError
from cellbench.remote import (
    TRUST_FILE,
    RemoteFile,
    TrustLedger,
    add_file,
    check_file,
    default_cache_dir,
    fetch_file,
    mirror_from_env,
)

PAYLOAD = os.urandom(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def _remote(server, mode="files", name="weights.bin", **checks) -> RemoteFile:
    (server.root / name).write_bytes(PAYLOAD)
    return RemoteFile(name, f"{server.url(mode)}/{name}", **checks)


def _left(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_pull_verifies_and_second_call_is_a_cache_hit(server, tmp_path):
    remote = _remote(server, md5=MD5, sha256=SHA256, size=len(PAYLOAD))
    cache = tmp_path / "cache"
    path = fetch_file(remote, cache, progress=False)
    assert path == cache / "weights.bin" and path.read_bytes() == PAYLOAD
    assert _left(cache) == ["weights.bin"]
    assert fetch_file(remote, cache, progress=False) == path
    assert server.requests == [("/files/weights.bin", None)]


def test_resume_after_a_cut_transfer(server, tmp_path):
    remote = _remote(server, "cut-once", md5=MD5)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="interrupted") as err:
        fetch_file(remote, cache, progress=False)
    assert remote.url in str(err.value)
    part = cache / "weights.bin.part"
    assert _left(cache) == ["weights.bin.part"]  # kept: the server can resume it
    half = part.stat().st_size
    assert half == len(PAYLOAD) // 2
    assert fetch_file(remote, cache, progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/cut-once/weights.bin", f"bytes={half}-")
    assert _left(cache) == ["weights.bin"]


def test_server_without_ranges_sends_the_whole_file_again(server, tmp_path):
    remote = _remote(server, "plain", md5=MD5)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "weights.bin.part").write_bytes(PAYLOAD[:1000])  # left by a killed process
    assert fetch_file(remote, cache, progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/plain/weights.bin", "bytes=1000-")]


def test_stale_partial_file_is_downloaded_whole(server, tmp_path, caplog):
    remote = _remote(server, md5=MD5)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "weights.bin.part").write_bytes(b"x" * 1000)  # not a prefix of the file served now
    assert fetch_file(remote, cache, progress=False).read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == ["bytes=1000-", None]
    assert "downloading it whole" in caplog.text


def test_checksum_mismatch_removes_the_file(server, tmp_path):
    remote = _remote(server, md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch: md5") as err:
        fetch_file(remote, cache, progress=False)
    message = str(err.value)
    assert remote.url in message and "CELLBENCH_MIRROR" in message and "removed the bad copy" in message
    assert _left(cache) == []


def test_size_mismatch(server, tmp_path):
    remote = _remote(server, size=len(PAYLOAD) + 1, sha256=SHA256)
    with pytest.raises(DataError, match="size mismatch"):
        fetch_file(remote, tmp_path / "cache", progress=False)
    assert _left(tmp_path / "cache") == []


def test_bad_cached_file_is_fetched_again(server, tmp_path, caplog):
    remote = _remote(server, sha256=SHA256)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "weights.bin").write_bytes(b"damaged")
    assert fetch_file(remote, cache, progress=False).read_bytes() == PAYLOAD
    assert "fetching it again" in caplog.text


def test_404_names_the_url_and_the_mirror_option(server, tmp_path):
    remote = RemoteFile("nothing.bin", f"{server.url()}/nothing.bin", md5=MD5)
    with pytest.raises(DataError, match="HTTP 404") as err:
        fetch_file(remote, tmp_path / "cache", progress=False)
    assert str(err.value).startswith(remote.url + ": cannot download nothing.bin")
    assert "CELLBENCH_MIRROR" in str(err.value)
    assert _left(tmp_path / "cache") == []


@pytest.mark.parametrize("mode", ["stall", "mute"])
def test_timeout(server, tmp_path, mode):
    remote = _remote(server, mode, md5=MD5)
    with pytest.raises(DataError, match="timed out") as err:
        fetch_file(remote, tmp_path / "cache", progress=False, timeout=0.3)
    assert remote.url in str(err.value)
    # a stalled transfer that can resume keeps its bytes; one that never answered leaves nothing
    assert _left(tmp_path / "cache") == (["weights.bin.part"] if mode == "stall" else [])


def test_no_network(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = RemoteFile("w.bin", f"http://127.0.0.1:{port}/w.bin", md5=MD5)
    with pytest.raises(DataError, match="cannot connect") as err:
        fetch_file(remote, tmp_path / "cache", progress=False, timeout=2)
    assert str(err.value).startswith(remote.url)


def test_mirror_folder_is_tried_first(server, tmp_path):
    remote = _remote(server, md5=MD5)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "weights.bin").write_bytes(PAYLOAD)
    path = fetch_file(remote, tmp_path / "cache", mirror=str(mirror), progress=False)
    assert path.read_bytes() == PAYLOAD and server.requests == []


def test_mirror_url_and_dead_upstream(server, tmp_path):
    (server.root / "weights.bin").write_bytes(PAYLOAD)
    remote = RemoteFile("weights.bin", "http://127.0.0.1:9/upstream/weights.bin", md5=MD5)
    path = fetch_file(remote, tmp_path / "cache", mirror=server.url() + "/", progress=False)
    assert path.read_bytes() == PAYLOAD and server.requests == [("/files/weights.bin", None)]


def test_mirror_without_the_file_falls_back_to_the_url(server, tmp_path, caplog):
    remote = _remote(server, md5=MD5)
    (tmp_path / "mirror").mkdir()
    assert fetch_file(remote, tmp_path / "cache", mirror=str(tmp_path / "mirror"), progress=False).is_file()
    assert "not usable from the mirror" in caplog.text


def test_mirror_and_url_both_failing(server, tmp_path):
    remote = RemoteFile("nothing.bin", f"{server.url()}/nothing.bin", md5=MD5)
    with pytest.raises(DataError) as err:
        fetch_file(remote, tmp_path / "cache", mirror=str(tmp_path / "mirror"), progress=False)
    message = str(err.value)
    assert f"{tmp_path / 'mirror' / 'nothing.bin'}: no such file" in message and "HTTP 404" in message
    assert f"the mirror {tmp_path / 'mirror'}" in message


def test_mirror_from_the_environment(server, tmp_path, monkeypatch):
    remote = _remote(server, md5=MD5)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "weights.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("CELLBENCH_MIRROR", str(mirror))
    assert mirror_from_env("data") == mirror_from_env("model") == str(mirror)
    monkeypatch.setenv("CELLBENCH_MODEL_MIRROR", "/models")
    assert mirror_from_env("model") == "/models" and mirror_from_env("data") == str(mirror)
    fetch_file(remote, tmp_path / "a", progress=False)
    assert server.requests == []
    fetch_file(remote, tmp_path / "b", mirror="", progress=False)  # "" turns the mirror off
    assert len(server.requests) == 1


def test_trust_on_first_use(server, tmp_path, caplog):
    remote = _remote(server)  # no checksum published
    cache = tmp_path / "cache"
    caplog.set_level(logging.WARNING)
    path = fetch_file(remote, cache, progress=False)
    assert "not verified" in caplog.text and SHA256 in caplog.text
    ledger = json.loads((cache / TRUST_FILE).read_text())["files"]
    assert ledger[remote.url]["sha256"] == SHA256 and ledger[remote.url]["size"] == len(PAYLOAD)
    assert check_file(path, remote, TrustLedger(cache / TRUST_FILE)).basis == "recorded"

    caplog.clear()
    path.unlink()
    assert fetch_file(remote, cache, progress=False).read_bytes() == PAYLOAD  # checked against the record
    assert "not verified" not in caplog.text

    path.unlink()
    (server.root / "weights.bin").write_bytes(PAYLOAD[:-1] + b"!")  # the server's copy changed
    with pytest.raises(DataError, match="recorded at its first download"):
        fetch_file(remote, cache, progress=False)
    assert _left(cache) == [TRUST_FILE]


def test_trust_ledger_elsewhere_and_tampered_cache(server, tmp_path):
    remote = _remote(server)
    ledger = tmp_path / "ledgers" / "models.json"
    path = fetch_file(remote, tmp_path / "cache", progress=False, trust_ledger=ledger)
    assert ledger.is_file() and not (tmp_path / "cache" / TRUST_FILE).exists()
    path.write_bytes(b"tampered")
    check = check_file(path, remote, TrustLedger(ledger))
    assert not check.ok and "size mismatch" in check.problem
    assert fetch_file(remote, tmp_path / "cache", progress=False, trust_ledger=ledger).read_bytes() == PAYLOAD


def test_add_file_checks_before_copying(tmp_path, caplog):
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(PAYLOAD)
    bad.write_bytes(b"not it")
    remote = RemoteFile("weights.bin", "https://example.org/weights.bin", md5=MD5)
    cache = tmp_path / "cache"
    assert add_file(good, remote, cache).read_bytes() == PAYLOAD
    with pytest.raises(DataError, match="not a good copy of weights.bin") as err:
        add_file(bad, remote, cache)
    assert str(err.value).startswith(str(bad))
    assert _left(cache) == ["weights.bin"] and (cache / "weights.bin").read_bytes() == PAYLOAD
    unpublished = RemoteFile("w2.bin", "https://example.org/w2.bin")
    add_file(good, unpublished, cache)
    assert "not verified" in caplog.text
    with pytest.raises(DataError, match="recorded at its first download"):
        add_file(bad, unpublished, cache)
    with pytest.raises(DataError, match="no such file"):
        add_file(tmp_path / "absent", remote, cache)


def test_a_download_in_progress_is_not_written_twice(server, tmp_path):
    remote = _remote(server, md5=MD5)
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / "weights.bin.part", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DataError, match="another process is downloading"):
            fetch_file(remote, cache, progress=False)
    assert fetch_file(remote, cache, progress=False).read_bytes() == PAYLOAD


def test_remote_file_is_validated():
    with pytest.raises(ValueError, match="plain file name"):
        RemoteFile("a/b", "https://x")
    with pytest.raises(ValueError, match="md5"):
        RemoteFile("a", "https://x", md5="ABC")
    with pytest.raises(ValueError, match="sha256"):
        RemoteFile("a", "https://x", sha256="0" * 63)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CELLBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cellbench"
