"""A hostile gallery: a model archive that unpacks to gigabytes, and an index.json of hundreds of MB, refused."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from gallery_helpers import serve

from cellbench.cli.main import main
from cellbench.cli.unpack_options import DEFAULT_TEXT
from cellbench.errors import DataError
from cellbench.gallery import pull, read_index
from cellbench.gallery.archive import pack, unpack
from cellbench.remote import DEFAULT_LIMITS, MODEL_LIMITS, UnpackLimits
from cellbench.remote.unpack_limits import format_size

REMOTE_TESTS = Path(__file__).parents[1] / "remote"
if str(REMOTE_TESTS) not in sys.path:
    sys.path.insert(0, str(REMOTE_TESTS))

from local_server import serve as serve_modes  # noqa: E402

CAP = UnpackLimits(max_bytes=1 << 20, max_entries=10)
BOMB = 5 << 20


def _gallery(folder: Path, model: Path, name: str = "bomb") -> Path:
    """A gallery folder holding ``model`` packed, with an index whose sha256 and size are right."""
    rel = f"models/{name}/model.tar.gz"
    (folder / rel).parent.mkdir(parents=True)
    size = pack(model, folder / rel)
    entry = {"name": name, "method": "watershed", "modality": "fluorescence", "target": "nuclei",
             "channels": "grey", "dataset": "d", "task": "all",
             "archive": {"path": rel, "size": size, "sha256": hashlib.sha256((folder / rel).read_bytes()).hexdigest()}}
    index = {"format": "cellbench-gallery", "format_version": 1, "models": [entry]}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture
def bomb_gallery(tmp_path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    (model / "weights.bin").write_bytes(bytes(BOMB))
    gallery = _gallery(tmp_path / "gallery", model)
    assert (gallery / "models/bomb/model.tar.gz").stat().st_size < 20_000
    return gallery


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_pull_refuses_a_model_archive_that_unpacks_past_the_cap(bomb_gallery, tmp_path):
    with serve(bomb_gallery) as url:
        with pytest.raises(DataError, match=r"unpacks to more than the cap of 1 MiB \(at entry 'model/weights.bin'\)") \
                as err:
            pull("bomb", url, cache=tmp_path / "cache", progress=False, limits=CAP)
        assert str(err.value).startswith(f"{url}/models/bomb/model.tar.gz")
        assert _files(tmp_path / "cache") == []
        path = pull("bomb", url, cache=tmp_path / "cache", progress=False, limits=UnpackLimits(max_bytes=BOMB + 10))
    assert (path / "weights.bin").stat().st_size == BOMB


def test_cli_pull_cap(bomb_gallery, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["gallery", "pull", "bomb", "--gallery", str(bomb_gallery), "--max-unpacked-size", "1M"]) == 2
    assert "more than the cap of 1 MiB" in capsys.readouterr().err
    assert _files(tmp_path / "cache") == []
    assert main(["gallery", "pull", "bomb", "--gallery", str(bomb_gallery), "--max-unpacked-size", "6M",
                 "--max-unpacked-files", "5"]) == 0


def test_unpack_refuses_too_many_entries(tmp_path):
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for k in range(50):
            info = tarfile.TarInfo(f"model/f{k:02d}")
            tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match=r"more than the cap of 10 entries \(at 'model/f10'\)"):
        unpack(archive, tmp_path / "out", limits=CAP)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["many.tar.gz"]


def _big_index(folder: Path, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    index = {"format": "cellbench-gallery", "format_version": 1, "models": [], "padding": "x" * size}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def test_an_index_past_the_cap_is_refused(tmp_path):
    gallery = _big_index(tmp_path / "gallery", 300_000)
    with pytest.raises(DataError, match=r"index.json: gallery index is more than 100,000 bytes, over the cap"):
        read_index(gallery, max_index_bytes=100_000)
    with serve(gallery) as url:  # with a Content-Length: refused before the body is read
        with pytest.raises(DataError, match=r"gallery index is 300,\d+ bytes, over the cap of 100,000"):
            read_index(url, max_index_bytes=100_000)
    with serve_modes(gallery) as srv:  # without one: at most 100,001 bytes are read
        with pytest.raises(DataError, match="more than 100,000 bytes"):
            read_index(srv.url("no-length"), max_index_bytes=100_000)
    assert read_index(gallery)["models"] == []  # under the default cap


def test_cli_help_names_the_library_defaults():
    assert DEFAULT_TEXT["data"] == (format_size(DEFAULT_LIMITS.max_bytes), f"{DEFAULT_LIMITS.max_entries:,}")
    assert DEFAULT_TEXT["model"] == (format_size(MODEL_LIMITS.max_bytes), f"{MODEL_LIMITS.max_entries:,}")
