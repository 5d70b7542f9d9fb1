"""`cellbench gallery publish | list | search | pull`, `predict gallery:NAME` and `export bioimageio`, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import tifffile

GALLERY_TESTS = Path(__file__).parents[1] / "gallery"
if str(GALLERY_TESTS) not in sys.path:
    sys.path.insert(0, str(GALLERY_TESTS))

from gallery_helpers import serve, tiny_run  # noqa: E402

from cellbench.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny run's watershed model published into a gallery folder with the CLI; (root, run, model, gallery)."""
    root = tmp_path_factory.mktemp("gallery-cli")
    run, model = tiny_run(root)
    gallery = root / "gallery"
    assert main(["gallery", "publish", str(model), "--gallery", str(gallery), "--name", "ws-tiny", "--run", str(run),
                 "--licence", "CC-BY-4.0", "--modality", "fluorescence", "--target", "nuclei",
                 "--channels", "grayscale", "--author", "A. Tester"]) == 0
    assert main(["gallery", "publish", str(model), "--gallery", str(gallery), "--name", "ws-unscored",
                 "--modality", "brightfield", "--target", "whole-cell"]) == 0
    return root, run, model, gallery


def _labels(folder: Path) -> dict[str, bytes]:
    return {p.name: tifffile.imread(p).tobytes() for p in sorted((folder / "labels").iterdir())}


def test_publish_and_list(published, capsys):
    root, _, _, gallery = published
    capsys.readouterr()
    assert main(["gallery", "list", "--gallery", str(gallery), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == ["ws-unscored", "ws-tiny"]  # SegGal order: brightfield before fluorescence
    scored = entries[1]
    assert scored["accuracy"]["dataset"] == "tiny" and scored["accuracy"]["split"] == "test"
    assert scored["licence"] == "CC-BY-4.0" and scored["train_images"] == 3
    assert main(["gallery", "list", "--gallery", str(gallery), "--json", "--sort", "accuracy"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == ["ws-tiny", "ws-unscored"]
    assert main(["gallery", "list", "--gallery", str(gallery), "--json", "--modality", "fluor", "--task", "all"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == ["ws-tiny"]
    assert main(["gallery", "search", "unscored", "--gallery", str(gallery)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ws-unscored  watershed v1  brightfield / whole-cell") and "no held-out score" in out
    assert main(["gallery", "list", "--gallery", str(gallery)]) == 0
    assert "F1@0.5 1.000 on tiny/test (2 images, overlap GT, boundary 0 px)" in capsys.readouterr().out


def test_round_trip_predictions_identical_from_folder_and_http(published, tmp_path, monkeypatch, capsys):
    root, _, model, gallery = published
    images = root / "data" / "test" / "images"
    assert main(["predict", str(model), "--images", str(images), "--out", str(tmp_path / "original")]) == 0
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache-folder"))
    assert main(["gallery", "pull", "ws-tiny", "--gallery", str(gallery)]) == 0
    pulled = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert pulled == tmp_path / "cache-folder" / "gallery" / "ws-tiny" and (pulled / "model.json").is_file()
    assert main(["predict", "gallery:ws-tiny", "--gallery", str(gallery), "--images", str(images),
                 "--out", str(tmp_path / "from-folder")]) == 0
    with serve(gallery) as url:
        monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache-http"))  # an empty cache: pulled over http
        assert main(["predict", "gallery:ws-tiny", "--gallery", url, "--images", str(images),
                     "--out", str(tmp_path / "from-http")]) == 0
    assert (tmp_path / "cache-http" / "gallery" / "ws-tiny" / "model.json").is_file()
    original = _labels(tmp_path / "original")
    assert len(original) == 2
    assert _labels(tmp_path / "from-folder") == original == _labels(tmp_path / "from-http")
    manifest = json.loads((tmp_path / "from-http" / "cellbench-predict.json").read_text())
    assert manifest["model"] == str(tmp_path / "cache-http" / "gallery" / "ws-tiny")


def test_bad_pulls_exit_2_with_a_clear_error(published, tmp_path, monkeypatch, capsys):
    _, _, _, gallery = published
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["predict", "gallery:ws-tiny", "--images", "x", "--out", str(tmp_path / "o")]) == 2
    assert "needs --gallery" in capsys.readouterr().err
    assert main(["gallery", "pull", "missing", "--gallery", str(gallery)]) == 2
    assert "no model named 'missing'" in capsys.readouterr().err
    tampered = tmp_path / "tampered"
    import shutil

    shutil.copytree(gallery, tampered)
    index = json.loads((tampered / "index.json").read_text())
    entry = next(m for m in index["models"] if m["name"] == "ws-tiny")
    entry["archive"]["sha256"] = "0" * 64
    (tampered / "index.json").write_text(json.dumps(index))
    assert main(["gallery", "pull", "ws-tiny", "--gallery", str(tampered)]) == 2
    err = capsys.readouterr().err
    assert "cellbench: error:" in err and "sha256" in err
    assert not (tmp_path / "cache" / "gallery" / "ws-tiny").exists()


def test_export_bioimageio_refuses_a_method_it_cannot_export(published, tmp_path, capsys):
    _, _, model, _ = published
    assert main(["export", "bioimageio", str(model), "--out", str(tmp_path / "pkg.zip")]) == 2
    assert "handles cellpose model directories; this is a 'watershed' model" in capsys.readouterr().err
    assert not (tmp_path / "pkg.zip").exists()


def test_cli_sort_keys_are_the_gallery_s():
    from cellbench.cli.gallery import SORT_KEYS as cli_keys
    from cellbench.gallery.index import SORT_KEYS

    assert tuple(cli_keys) == tuple(SORT_KEYS)
