"""Download with checksums into a cache, run offline against file:// fixtures in the Zenodo layout."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import urllib.request
import zipfile

import pytest

import cellbench.data.download as dl
from cellbench.cli.main import main
from cellbench.data import read_dataset
from cellbench.data.download import (
    GLIOMA_C6,
    REMOTE_DATASETS,
    RemoteArchive,
    default_cache_dir,
    download,
    fetch_archive,
    unpack,
)
from cellbench.data.registry import DATASETS, DatasetFile
from cellbench.data.synth import synth_glioma_c6
from cellbench.errors import DataError
from cellbench.remote import RemoteFile

FILES = {
    "dataset/spec/train/anno_train.json": b'{"images": [], "annotations": [], "categories": []}',
    "dataset/spec/train/images/a.txt": b"A" * 5000,
    "dataset/gen/images/b.txt": b"hello world " * 300,
}


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _zip(path, files=FILES, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _record(tmp_path, archive, md5=None, key="dataset.zip"):
    record = {
        "files": [
            {"key": "README.md", "checksum": "md5:00000000000000000000000000000000", "links": {"self": "file:///nonexistent"}},
            {"key": key, "checksum": f"md5:{md5 or _md5(archive)}", "links": {"self": archive.as_uri()}},
        ]
    }
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    return path


def _remote(archive, record, **kw) -> RemoteArchive:
    return RemoteArchive(
        name="toy", url="file:///does/not/exist.zip", filename="dataset.zip", record_url=record.as_uri(), **kw
    )


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "source"
    src.mkdir()
    archive = _zip(src / "dataset.zip")
    return archive, _record(src, archive)


def _no_hidden(folder):
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")]


def test_glioma_c6_constant():
    assert REMOTE_DATASETS["glioma-c6"] is GLIOMA_C6
    assert GLIOMA_C6.name == "glioma-c6"
    assert GLIOMA_C6.filename == "dataset.zip"
    assert GLIOMA_C6.record_url == "https://zenodo.org/api/records/15083188"
    assert GLIOMA_C6.url.startswith("https://zenodo.org/records/15083188/files/dataset.zip")
    assert "CC BY-NC" in GLIOMA_C6.licence


def test_download_unpacks_into_cache(tmp_path, source):
    archive, record = source
    cache = tmp_path / "cache"
    data = download(_remote(archive, record), cache_dir=cache, progress=False)
    assert data == cache / "toy" / "data"
    for name, content in FILES.items():
        assert (data / name).read_bytes() == content
    assert sorted(p.name for p in (cache / "toy").iterdir()) == ["data", "data.complete", "dataset.zip"]
    assert _md5(cache / "toy" / "dataset.zip") == _md5(archive)
    marker = json.loads((cache / "toy" / "data.complete").read_text())
    assert marker["md5"] == _md5(archive)
    assert _no_hidden(cache) == []


def test_second_call_is_a_cache_hit(tmp_path, source):
    archive, record = source
    cache = tmp_path / "cache"
    remote = _remote(archive, record)
    first = download(remote, cache_dir=cache, progress=False)
    archive.unlink()
    record.unlink()

    def no_network(url):
        raise AssertionError(f"opened {url} on a cache hit")

    assert download(remote, cache_dir=cache, opener=no_network, progress=False) == first
    assert (first / "dataset/gen/images/b.txt").read_bytes() == FILES["dataset/gen/images/b.txt"]


def test_cached_archive_is_reused_when_data_is_gone(tmp_path, source):
    archive, record = source
    cache = tmp_path / "cache"
    remote = _remote(archive, record)
    data = download(remote, cache_dir=cache, progress=False)
    archive.unlink()  # the record stays (it holds the checksum), the file is gone
    (cache / "toy" / "data.complete").unlink()
    (data / "dataset/gen/images/b.txt").unlink()
    again = download(remote, cache_dir=cache, progress=False)
    assert (again / "dataset/gen/images/b.txt").read_bytes() == FILES["dataset/gen/images/b.txt"]


def test_damaged_cached_archive_is_downloaded_again(tmp_path, source):
    archive, record = source
    cache = tmp_path / "cache"
    (cache / "toy").mkdir(parents=True)
    (cache / "toy" / "dataset.zip").write_bytes(b"truncated")
    path = fetch_archive(_remote(archive, record), cache, progress=False)
    assert path.read_bytes() == archive.read_bytes()


def test_checksum_mismatch(tmp_path, source):
    archive, _ = source
    record = _record(tmp_path / "source", archive, md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch") as err:
        download(_remote(archive, record), cache_dir=cache, progress=False)
    assert archive.as_uri() in str(err.value)
    assert sorted(p.name for p in (cache / "toy").iterdir()) == []  # no .part, no archive, no data


def test_pinned_md5_wins_over_record(tmp_path, source):
    archive, record = source
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(_remote(archive, record, md5="f" * 32), cache_dir=cache, progress=False)
    assert list((cache / "toy").iterdir()) == []
    ok = download(_remote(archive, record, md5=_md5(archive)), cache_dir=cache, progress=False)
    assert (ok / "dataset/spec/train/images/a.txt").is_file()


def test_without_record_uses_url_and_pinned_md5(tmp_path, source):
    archive, _ = source
    remote = RemoteArchive(name="toy", url=archive.as_uri(), filename="dataset.zip", md5=_md5(archive))
    data = download(remote, cache_dir=tmp_path / "cache", progress=False)
    assert (data / "dataset/spec/train/anno_train.json").is_file()


def test_record_without_the_file(tmp_path, source):
    archive, _ = source
    record = _record(tmp_path / "source", archive, key="other.zip")
    with pytest.raises(DataError, match="record lists no file 'dataset.zip'"):
        download(_remote(archive, record), cache_dir=tmp_path / "cache", progress=False)


def test_record_not_json(tmp_path, source):
    archive, record = source
    record.write_text("<html>rate limited</html>")
    with pytest.raises(DataError, match="record is not JSON"):
        download(_remote(archive, record), cache_dir=tmp_path / "cache", progress=False)


def test_unreachable_record(tmp_path, source):
    archive, record = source
    record.unlink()
    with pytest.raises(DataError, match="cannot download") as err:
        download(_remote(archive, record), cache_dir=tmp_path / "cache", progress=False)
    assert record.as_uri() in str(err.value)


def _corrupt_member_data(path):
    raw = bytearray(path.read_bytes())
    start = raw.find(b"dataset/gen/images/b.txt") + len("dataset/gen/images/b.txt") + 5
    for k in range(start, start + 12):
        raw[k] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_corrupt_zip(tmp_path, compression):
    src = tmp_path / "source"
    src.mkdir()
    archive = _zip(src / "dataset.zip", compression=compression)
    _corrupt_member_data(archive)
    record = _record(src, archive)  # the checksum matches the damaged file: only the CRCs catch it
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="corrupt archive"):
        download(_remote(archive, record), cache_dir=cache, progress=False)
    assert sorted(p.name for p in (cache / "toy").iterdir()) == ["dataset.zip"]  # nothing unpacked


def test_not_a_zip(tmp_path):
    src = tmp_path / "source"
    src.mkdir()
    archive = src / "dataset.zip"
    archive.write_bytes(b"<html>not found</html>")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a zip archive"):
        download(_remote(archive, _record(src, archive)), cache_dir=cache, progress=False)
    assert not (cache / "toy" / "data").exists()
    assert not (cache / "toy" / "data.complete").exists()


@pytest.mark.parametrize("member", ["dataset/../../evil.txt", "../evil.txt", "/abs/evil.txt"])
def test_unsafe_member_refused(tmp_path, member):
    src = tmp_path / "source"
    src.mkdir()
    archive = _zip(src / "dataset.zip", {**FILES, member: b"evil"})
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="unsafe path"):
        download(_remote(archive, _record(src, archive)), cache_dir=cache, progress=False)
    assert not (cache / "toy" / "data").exists()
    assert not list(tmp_path.rglob("evil.txt"))
    assert _no_hidden(cache) == []


def test_unpack_replaces_destination(tmp_path):
    archive = _zip(tmp_path / "a.zip")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    assert unpack(archive, dest) == dest
    assert not (dest / "stale.txt").exists()
    assert (dest / "dataset/gen/images/b.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "out"]


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'; known: glioma-c6"):
        download("nope", cache_dir=tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CELLBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cellbench"


def test_glioma_layout_download_reads_back(tmp_path):
    """A synthetic dataset.zip in the real layout: downloaded, unpacked, and readable as glioma-c6."""
    synth = tmp_path / "synth"
    synth_glioma_c6(synth, n_images=4, seed=0, shape=(120, 150), cells_per_image=4)
    src = tmp_path / "source"
    src.mkdir()
    archive = src / "dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(synth.rglob("*")):
            zf.write(path, path.relative_to(synth).as_posix())
    remote = RemoteArchive(name="glioma-c6", url="file:///x", filename="dataset.zip", record_url=_record(src, archive).as_uri())
    data = download(remote, cache_dir=tmp_path / "cache", progress=False)
    assert (data / "dataset" / "spec" / "train" / "anno_train.json").is_file()
    assert read_dataset(data, "glioma-c6").summary() == {
        **read_dataset(synth, "glioma-c6").summary(),
        "root": str(data / "dataset"),
    }


def test_cli_download_with_archive(tmp_path, capsys):
    archive = _zip(tmp_path / "dataset.zip")
    cache = tmp_path / "cache"
    rc = main(["data", "download", "glioma-c6", "--cache", str(cache), "--archive", str(archive)])
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.strip() == str(cache / "glioma-c6" / "data")
    assert "downloading" not in err
    for name, content in FILES.items():
        assert (cache / "glioma-c6" / "data" / name).read_bytes() == content
    assert (cache / "glioma-c6" / "data.complete").is_file()


def test_cli_download_with_bad_archive(tmp_path, capsys):
    archive = tmp_path / "dataset.zip"
    archive.write_bytes(b"garbage")
    cache = tmp_path / "cache"
    rc = main(["data", "download", "glioma-c6", "--cache", str(cache), "--archive", str(archive)])
    _, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith("cellbench: error: ")
    assert str(archive) in err and "not a zip archive" in err
    assert not (cache / "glioma-c6" / "data").exists()


def test_cli_download_with_corrupt_deflated_archive(tmp_path, capsys):
    archive = _zip(tmp_path / "dataset.zip")
    _corrupt_member_data(archive)
    rc = main(["data", "download", "glioma-c6", "--cache", str(tmp_path / "cache"), "--archive", str(archive)])
    assert rc == 2
    assert "corrupt archive" in capsys.readouterr().err


class _BrokenResponse:
    """A response that delivers one block and then loses the connection."""

    length = 10_000

    def __init__(self):
        self.calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n=-1):
        self.calls += 1
        if self.calls == 1:
            return b"PK\x03\x04" + b"\0" * 100
        raise ConnectionResetError("connection reset by peer")


def test_connection_lost_mid_download(tmp_path, source):
    archive, record = source

    def opener(url):
        return urllib.request.urlopen(url) if url == record.as_uri() else _BrokenResponse()

    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="connection reset") as err:
        download(_remote(archive, record), cache_dir=cache, opener=opener, progress=False)
    assert archive.as_uri() in str(err.value)
    assert list((cache / "toy").iterdir()) == []  # no .part left behind
    # the next run starts clean and succeeds
    data = download(_remote(archive, record), cache_dir=cache, progress=False)
    assert (data / "dataset/gen/images/b.txt").is_file()


def test_cli_download_from_the_network(tmp_path, source, monkeypatch, capsys):
    """The real command path without --archive, with the dataset's record served from file:// URLs."""
    archive, record = source
    entry = dataclasses.replace(
        DATASETS["glioma-c6"], size_hint="tiny",
        files=(DatasetFile(RemoteFile("dataset.zip", "file:///nowhere.zip"), record_url=record.as_uri()),))
    monkeypatch.setitem(DATASETS, "glioma-c6", entry)
    cache = tmp_path / "cache"
    rc = main(["data", "download", "glioma-c6", "--cache", str(cache)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip() == str(cache / "glioma-c6" / "data")
    assert "downloading glioma-c6 (tiny, licence CC BY-NC 4.0)" in err
    assert (cache / "glioma-c6" / "data" / "dataset/spec/train/anno_train.json").is_file()
    record.unlink()
    assert main(["data", "download", "glioma-c6", "--cache", str(tmp_path / "other")]) == 2
    assert "cannot download" in capsys.readouterr().err


# --- archive bombs, unusable first copies, unreachable checksums ------------------------------------------------


def _bomb(path):
    """A zip of a few KB that unpacks to 5 MiB."""
    return _zip(path, {"dataset/zeros.bin": bytes(5 << 20)})


def test_cli_refuses_an_archive_bomb_given_by_hand(tmp_path, capsys):
    """TissueNet publishes no checksum: its --archive is checked only by what it unpacks to."""
    bomb = _bomb(tmp_path / "tissuenet_v1.1.zip")
    assert bomb.stat().st_size < 20_000
    cache = tmp_path / "cache"
    rc = main(["data", "download", "tissuenet", "--cache", str(cache), "--archive", str(bomb),
               "--max-unpacked-size", "1M"])
    err = capsys.readouterr().err
    assert rc == 2 and str(bomb) in err and "more than the cap of 1 MiB" in err and "--max-unpacked-size" in err
    assert not cache.exists()  # not copied, not trusted, nothing unpacked
    rc = main(["data", "download", "tissuenet", "--cache", str(cache), "--archive", str(bomb),
               "--max-unpacked-size", "6M", "--max-unpacked-files", "10"])
    assert rc == 0 and (cache / "tissuenet" / "data" / "dataset" / "zeros.bin").stat().st_size == 5 << 20


def test_download_refuses_a_bomb_while_unpacking_and_keeps_no_data(tmp_path):
    from cellbench.remote import UnpackLimits

    src = tmp_path / "source"
    src.mkdir()
    bomb = _bomb(src / "dataset.zip")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="more than the cap of 1 MiB"):
        download(_remote(bomb, _record(src, bomb)), cache_dir=cache, progress=False,
                 limits=UnpackLimits(max_bytes=1 << 20))
    assert sorted(p.name for p in (cache / "toy").iterdir()) == ["dataset.zip"]  # verified by md5: kept


def _unpublished(monkeypatch, url: str) -> None:
    """glioma-c6 as a dataset whose one zip has no published checksum, served at ``url``."""
    entry = dataclasses.replace(DATASETS["glioma-c6"], files=(DatasetFile(RemoteFile("dataset.zip", url)),))
    monkeypatch.setitem(DATASETS, "glioma-c6", entry)


def test_a_first_copy_that_does_not_unpack_is_not_trusted(tmp_path, monkeypatch):
    from cellbench.data.registered import download_registered
    from cellbench.remote import TRUST_FILE

    src = tmp_path / "source"
    src.mkdir()
    served = src / "dataset.zip"
    served.write_bytes(b"<html>maintenance</html>")  # what the server sent the first time
    _unpublished(monkeypatch, served.as_uri())
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a zip archive"):
        download_registered("glioma-c6", cache, progress=False)
    assert sorted(p.name for p in (cache / "glioma-c6").iterdir()) == []  # removed, not recorded
    _zip(served)  # the genuine file
    data = download_registered("glioma-c6", cache, progress=False)
    assert (data / "dataset/gen/images/b.txt").is_file()
    ledger = json.loads((cache / "glioma-c6" / TRUST_FILE).read_text())["files"]
    assert ledger[served.as_uri()]["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()


def test_unreachable_record_with_a_mirror_is_not_taken_unverified(tmp_path, monkeypatch, caplog):
    archive, record = _zip(tmp_path / "dataset.zip"), tmp_path / "gone.json"  # the record cannot be read
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "dataset.zip").write_bytes(archive.read_bytes())
    monkeypatch.setenv("CELLBENCH_MIRROR", str(mirror))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="cannot read the publisher's checksum for dataset.zip") as err:
        download(_remote(archive, record), cache_dir=cache, progress=False)
    message = str(err.value)
    assert message.startswith(record.as_uri()) and str(mirror) in message and "--allow-unverified" in message
    assert not (cache / "toy").exists() or list((cache / "toy").iterdir()) == []
    caplog.set_level(logging.WARNING)
    data = download(_remote(archive, record), cache_dir=cache, progress=False, allow_unverified=True)
    assert (data / "dataset/gen/images/b.txt").is_file()
    assert "its publisher's checksum could not be read" in caplog.text
    assert "gives no checksum" not in caplog.text


def test_unreachable_record_with_a_pinned_checksum_is_verified_by_the_pin(tmp_path, monkeypatch):
    archive, record = _zip(tmp_path / "dataset.zip"), tmp_path / "gone.json"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "dataset.zip").write_bytes(b"not the archive")
    monkeypatch.setenv("CELLBENCH_MIRROR", str(mirror))
    pinned = _remote(archive, record, sha256=hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="checksum mismatch: sha256"):
        download(pinned, cache_dir=tmp_path / "cache", progress=False)
    (mirror / "dataset.zip").write_bytes(archive.read_bytes())
    assert (download(pinned, cache_dir=tmp_path / "cache", progress=False) / "dataset").is_dir()


def test_cli_allow_unverified(tmp_path, source, monkeypatch, capsys):
    archive, record = source
    entry = dataclasses.replace(
        DATASETS["glioma-c6"], files=(DatasetFile(RemoteFile("dataset.zip", "file:///nowhere.zip"),
                                                  record_url=(tmp_path / "gone.json").as_uri()),))
    monkeypatch.setitem(DATASETS, "glioma-c6", entry)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "dataset.zip").write_bytes(archive.read_bytes())
    monkeypatch.setenv("CELLBENCH_MIRROR", str(mirror))
    cache = tmp_path / "cache"
    assert main(["data", "download", "glioma-c6", "--cache", str(cache)]) == 2
    assert "cannot read the publisher's checksum" in capsys.readouterr().err
    assert main(["data", "download", "glioma-c6", "--cache", str(cache), "--allow-unverified"]) == 0
    assert (cache / "glioma-c6" / "data" / "dataset").is_dir()


def test_the_record_size_caps_the_download(tmp_path, source):
    archive, _ = source
    record = _record(tmp_path / "source", archive)
    data = json.loads(record.read_text())
    data["files"][1]["size"] = 100  # the archive is larger than its record says
    record.write_text(json.dumps(data))
    with pytest.raises(DataError, match="sent more than the 100 bytes the file has"):
        download(_remote(archive, record), cache_dir=tmp_path / "cache", progress=False)


def test_a_huge_record_is_refused(tmp_path, source):
    archive, record = source
    record.write_bytes(b" " * (dl.MAX_RECORD_BYTES + 10))
    with pytest.raises(DataError, match="record is larger than 4 MiB"):
        download(_remote(archive, record), cache_dir=tmp_path / "cache", progress=False)
