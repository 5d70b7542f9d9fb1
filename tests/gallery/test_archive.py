"""Model archives: the same model directory always gives the same bytes; unpacking refuses what pack never writes."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from cellbench.errors import DataError
from cellbench.gallery.archive import pack, pack_bytes, unpack


def _model(folder: Path) -> Path:
    (folder / "weights").mkdir(parents=True)
    (folder / "model.json").write_text('{"a": 1}')
    (folder / "weights" / "w.bin").write_bytes(bytes(range(256)) * 10)
    return folder


def test_same_model_same_bytes_whatever_the_file_times_and_folder_name(tmp_path):
    a = _model(tmp_path / "a")
    first = pack_bytes(a)
    os.utime(a / "model.json", (1, 1))
    b = _model(tmp_path / "elsewhere" / "b")
    assert pack_bytes(a) == first == pack_bytes(b)
    (b / "model.json").write_text('{"a": 2}')
    assert pack_bytes(b) != first


def test_round_trip_and_extra_files(tmp_path):
    model = _model(tmp_path / "m")
    size = pack(model, tmp_path / "m.tar.gz")
    assert size == (tmp_path / "m.tar.gz").stat().st_size
    out = unpack(tmp_path / "m.tar.gz", tmp_path / "out", extra={"source.json": b"{}"})
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["model.json", "source.json", "weights",
                                                                        "weights/w.bin"]
    assert (out / "weights" / "w.bin").read_bytes() == (model / "weights" / "w.bin").read_bytes()


def _archive(path: Path, entries: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


@pytest.mark.parametrize("make", [
    lambda: tarfile.TarInfo("model/../../evil"),
    lambda: tarfile.TarInfo("/etc/evil"),
    lambda: tarfile.TarInfo("other/file"),
])
def test_unpack_refuses_entries_outside_the_model_folder(tmp_path, make):
    info = make()
    info.size = 1
    archive = _archive(tmp_path / "bad.tar.gz", [info])
    with pytest.raises(DataError, match="outside model/"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()


def test_unpack_refuses_links_and_corrupt_archives(tmp_path):
    link = tarfile.TarInfo("model/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(DataError, match="link or special file"):
        unpack(_archive(tmp_path / "link.tar.gz", [link]), tmp_path / "out")
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="junk.tar.gz"):
        unpack(tmp_path / "junk.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pack_refuses_links(tmp_path):
    model = _model(tmp_path / "m")
    (model / "weights" / "link").symlink_to(model / "model.json")
    with pytest.raises(DataError, match="link"):
        pack_bytes(model)
