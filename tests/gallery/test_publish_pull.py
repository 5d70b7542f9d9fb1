"""Publishing into a gallery folder and pulling back from the folder or over http, checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gallery_helpers import serve

from cellbench.errors import DataError
from cellbench.gallery import publish, pull, read_index, search
from cellbench.gallery.source import SOURCE_FILE
from cellbench.methods.model_dir import load_model


def _same_predictions(a, b, image) -> bool:
    pa, pb = load_model(a).predict(image), load_model(b).predict(image)
    return [(i.bbox, i.mask.tobytes(), i.score) for i in pa] == [(i.bbox, i.mask.tobytes(), i.score) for i in pb]


def test_publish_writes_archive_card_and_index(scored, tmp_path):
    run, model = scored
    gallery = tmp_path / "gallery"
    entry = publish(model, gallery, name="ws-tiny", run=run, licence="MIT", modality="fluorescence",
                    target="nuclei", channels="grayscale")
    folder = gallery / entry["archive"]["path"].rsplit("/", 1)[0]
    assert sorted(p.name for p in folder.iterdir()) == ["card.html", "card.json", "card.md", "model.tar.gz"]
    card = json.loads((folder / "card.json").read_text())
    assert card["archive"] == entry["archive"] and entry["archive"]["sha256"].startswith(folder.name)
    index = json.loads((gallery / "index.json").read_text())
    assert [m["name"] for m in index["models"]] == ["ws-tiny"] and index["format"] == "cellbench-gallery"
    assert entry["accuracy"]["dataset"] == "tiny" and entry["accuracy"]["split"] == "test"
    assert "ws-tiny" in (gallery / "index.html").read_text()
    assert not [p for p in gallery.rglob(".*") if p.name != ".cellbench-gallery.lock"]  # no partial files left

    with pytest.raises(DataError, match="has a model named 'ws-tiny' already"):
        publish(model, gallery, name="ws-tiny")
    again = publish(model, gallery, name="ws-tiny", overwrite=True)  # no run: no scores now
    assert again["archive"]["sha256"] == entry["archive"]["sha256"] and again["accuracy"] is None
    publish(model, gallery, name="ws-copy", run=run)
    assert sorted(m["name"] for m in read_index(gallery)["models"]) == ["ws-copy", "ws-tiny"]
    assert len(list((gallery / "models" / "ws-tiny").iterdir())) == 1  # the replaced version's folder is gone
    assert [e["name"] for e in search(read_index(gallery)["models"], text="copy")] == ["ws-copy"]
    assert search(read_index(gallery)["models"], modality="phase") == []
    for bad in ("../x", "", "a/b", ".hidden"):
        with pytest.raises(DataError, match="gallery model name"):
            publish(model, gallery, name=bad)


@pytest.fixture
def gallery(scored, tmp_path):
    run, model = scored
    folder = tmp_path / "gallery"
    publish(model, folder, name="ws-tiny", run=run)
    return folder


def test_pull_from_folder_and_http_gives_the_same_model(scored, gallery, tmp_path):
    _, model = scored
    image = np.asarray(__import__("tifffile").imread(next((model.parents[3] / "data" / "test" / "images").iterdir())))
    from_folder = pull("ws-tiny", gallery, cache=tmp_path / "cache1", progress=False)
    assert from_folder == tmp_path / "cache1" / "gallery" / "ws-tiny"
    sha256 = read_index(gallery)["models"][0]["archive"]["sha256"]
    assert json.loads((from_folder / SOURCE_FILE).read_text())["sha256"] == sha256
    assert _same_predictions(model, from_folder, image)
    with serve(gallery) as url:
        from_http = pull("ws-tiny", url, cache=tmp_path / "cache2", progress=False)
        assert read_index(url)["models"][0]["name"] == "ws-tiny"
    assert _same_predictions(model, from_http, image)
    assert not (tmp_path / "cache2" / "gallery" / ".downloads").exists()
    # pulled already: the cache is used, the gallery not read for the archive
    (gallery / read_index(gallery)["models"][0]["archive"]["path"]).unlink()
    assert pull("ws-tiny", gallery, cache=tmp_path / "cache1", progress=False) == from_folder


def test_pull_refuses_a_tampered_archive_and_leaves_nothing(gallery, tmp_path):
    archive = gallery / read_index(gallery)["models"][0]["archive"]["path"]
    data = bytearray(archive.read_bytes())
    data[-5] ^= 0xFF
    archive.write_bytes(bytes(data))
    with serve(gallery) as url:
        for source in (gallery, url):
            with pytest.raises(DataError, match="sha256|checksum"):
                pull("ws-tiny", source, cache=tmp_path / "cache", progress=False)
    cache = tmp_path / "cache" / "gallery"
    assert not (cache / "ws-tiny").exists()
    assert not [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else True


def test_pull_errors_name_the_gallery(gallery, tmp_path):
    with pytest.raises(DataError, match="no model named 'nope'; models: ws-tiny"):
        pull("nope", gallery, cache=tmp_path / "c", progress=False)
    with pytest.raises(DataError, match="not a gallery folder"):
        pull("ws-tiny", tmp_path, cache=tmp_path / "c", progress=False)
    (tmp_path / "empty").mkdir()
    with serve(tmp_path / "empty") as url:
        with pytest.raises(DataError, match=r"index.json: gallery index not available \(HTTP 404"):
            read_index(url)
    assert not (tmp_path / "c").exists()
