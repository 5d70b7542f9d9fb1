"""The datasets registered by name: entries, download through a local server, and reading each real layout.

Every fixture below is written in the layout its publisher ships (file names,
folder depth, json and npz keys), zipped as published, and downloaded through
``cellbench data download`` from a 127.0.0.1 server (or given to ``--archive``
for the datasets behind a sign-in), with the entry's URL and checksum pointed
at the fixture. No test reaches the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from imageio.v3 import imwrite

from cellbench.cli.main import main
from cellbench.data import LAYOUTS, read_dataset
from cellbench.data.registered import download_registered, read_registered
from cellbench.data.registry import DATASETS, DatasetFile, get_dataset
from cellbench.errors import DataError
from cellbench.remote import RemoteFile

sys.path.insert(0, str(Path(__file__).parents[1] / "remote"))
from local_server import serve  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("CELLBENCH_MIRROR", "CELLBENCH_MODEL_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


def test_every_entry_is_complete():
    for d in DATASETS.values():
        assert d.title and d.licence and d.citation and d.splits, d.name
        assert all(s.layout in LAYOUTS for s in d.splits.values()), d.name
        if d.based_on:
            assert d.based_on in DATASETS and not d.files, d.name
            continue
        assert d.files, d.name
        for f in d.files:
            assert f.remote.url.startswith("https://"), f.remote.url
            checked = f.remote.checksums or f.record_url
            assert checked or "trusted on first use" in d.checksum_note, d.name
        assert json.loads(json.dumps(d.to_dict()))["name"] == d.name


def test_list_json_names_every_dataset(capsys):
    assert main(["data", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    names = {e["name"] for e in entries}
    assert {"glioma-c6", "dsb2018", "livecell", "tissuenet", "neurips22-cellseg", "cellpose",
            "deepbacs-ecoli-brightfield", "deepbacs-bsubtilis-fluorescence", "cellseg-blood"} <= names
    assert all(e["files"] or e["based_on"] for e in entries)


def _labels(k: int, shape=(24, 24)) -> np.ndarray:
    lab = np.zeros(shape, np.uint16)
    lab[2:8, 2:8] = 1
    lab[12:20, 10 + k % 4:16 + k % 4] = 2
    return lab


def _image(shape=(24, 24)) -> np.ndarray:
    return (np.arange(np.prod(shape)) % 251).reshape(shape).astype(np.uint8)


def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _point_at(monkeypatch, name: str, served: dict[str, Path], base_url: str) -> None:
    """The entry's files served from ``base_url`` with the fixtures' sha256 (no Zenodo record)."""
    entry = DATASETS[name]
    files = tuple(
        DatasetFile(RemoteFile(f.remote.file_name, f"{base_url}/{f.remote.file_name}",
                               sha256=_sha256(served[f.remote.file_name])), unpack=f.unpack, dest=f.dest)
        for f in entry.files
    )
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(entry, files=files))


def _download(monkeypatch, tmp_path, name: str, served: dict[str, Path]) -> Path:
    root = tmp_path / "served"
    root.mkdir(exist_ok=True)
    for file_name, path in served.items():
        (root / file_name).write_bytes(path.read_bytes())
    with serve(root) as srv:
        _point_at(monkeypatch, name, served, srv.url())
        assert main(["data", "download", name]) == 0
    return download_registered(name)  # complete: nothing downloaded again


def test_dsb2018_stardist_release(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    for split, names in (("train", ["a", "b"]), ("test", ["c"])):
        for k, n in enumerate(names):
            for sub, arr in (("images", _image()), ("masks", _labels(k))):
                (src / "dsb2018" / split / sub).mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(src / "dsb2018" / split / sub / f"{n}.tif", arr)
    (src / "dsb2018" / "README.md").write_text("StarDist's DSB2018 subset")
    _download(monkeypatch, tmp_path, "dsb2018", {"dsb2018.zip": _zip(src, tmp_path / "dsb2018.zip")})
    capsys.readouterr()
    assert main(["data", "info", "dsb2018", "--split", "train", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_images"] == 2 and info["n_instances"] == 4
    assert [s.name for s in read_dataset("dsb2018", None, split="test").samples] == ["c"]


def test_neurips_and_the_cellseg1_blood_subset(tmp_path, monkeypatch):
    served = {}
    for zip_name, folder, n in (("Training-labeled.zip", "Training-labeled", 141), ("Tuning.zip", "Tuning", 24)):
        src = tmp_path / folder
        for k in range(n):
            (src / folder / "images").mkdir(parents=True, exist_ok=True)
            (src / folder / "labels").mkdir(parents=True, exist_ok=True)
            imwrite(src / folder / "images" / f"cell_{k + 1:05d}.png", _image((16, 16)))
            tifffile.imwrite(src / folder / "labels" / f"cell_{k + 1:05d}_label.tiff", _labels(k, (16, 16)))
        served[zip_name] = _zip(src, tmp_path / zip_name)
    _download(monkeypatch, tmp_path, "neurips22-cellseg", served)
    assert len(read_registered("neurips22-cellseg", split="train").samples) == 141
    blood = read_registered("cellseg-blood", split="train")
    names = [s.name for s in blood.samples]
    assert len(names) == 139 and "cell_00013" not in names and "cell_00014" not in names  # CellSeg1 drops 12, 13
    test = [s.name for s in read_registered("cellseg-blood", split="test").samples]
    assert test[:3] == ["cell_00001", "cell_00003", "cell_00007"] and len(test) == 14


def _cellpose_zip(tmp_path: Path, split: str, n: int) -> Path:
    src = tmp_path / f"cp-{split}"
    (src / split).mkdir(parents=True)
    for k in range(n):
        imwrite(src / split / f"{k:03d}_img.png", np.stack([_image((16, 16))] * 3, -1))
        imwrite(src / split / f"{k:03d}_masks.png", _labels(k, (16, 16)))
    return _zip(src, tmp_path / f"{split}.zip")


def test_cellpose_needs_its_files_by_hand_then_reads_its_naming(tmp_path, capsys):
    assert main(["data", "download", "cellpose"]) == 2
    err = capsys.readouterr().err
    assert "https://www.cellpose.org/dataset" in err and "--archive" in err
    train, test = _cellpose_zip(tmp_path, "train", 90), _cellpose_zip(tmp_path, "test", 12)
    assert main(["data", "download", "cellpose", "--archive", str(train), "--archive", str(test)]) == 0
    assert len(read_registered("cellpose", split="train").samples) == 90
    cps = read_registered("cellpose-specialized", split="test")
    assert [s.name for s in cps.samples] == [f"{k:03d}_img" for k in range(11)]
    assert all(len(s.instances) == 2 for s in cps.samples)


def test_a_bad_archive_is_refused_naming_it_and_never_trusted(tmp_path, capsys, _cache):
    bad = tmp_path / "train.zip"
    bad.write_bytes(b"not a zip")
    assert main(["data", "download", "cellpose", "--archive", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not a zip archive" in err
    assert not (_cache / "cellpose" / "train.zip").exists()


def test_deepbacs_layouts(tmp_path, monkeypatch):
    ecoli = tmp_path / "ecoli"
    for split in ("train", "test"):
        for sub, arr in (("brightfield", _image()), ("masks_RoiMap", _labels(1)), ("masks_binary", _labels(1) > 0)):
            (ecoli / split / sub).mkdir(parents=True)
            tifffile.imwrite(ecoli / split / sub / f"{split}_01.tif", arr.astype(np.uint8 if sub != "masks_RoiMap"
                                                                                   else np.uint16))
    (ecoli / "live-cell_data").mkdir()
    (ecoli / "live-cell_data" / "movie.tif").write_bytes(b"")
    name = "DeepBacs_Data_Segmentation_E.coli_Brightfield_dataset.zip"
    _download(monkeypatch, tmp_path, "deepbacs-ecoli-brightfield", {name: _zip(ecoli, tmp_path / name)})
    ds = read_registered("deepbacs-ecoli-brightfield", split="test")
    assert [s.name for s in ds.samples] == ["test_01"] and len(ds.samples[0].instances) == 2

    bsub = tmp_path / "bsub"
    for split in ("train", "test"):
        for sub, arr in (("fluorescence", _image()), ("masks", _labels(2))):
            (bsub / "pix2pix_dataset" / split / sub).mkdir(parents=True)
            tifffile.imwrite(bsub / "pix2pix_dataset" / split / sub / "f1.tif", arr)
    (bsub / "StarDist_dataset").mkdir()
    (bsub / "StarDist_dataset" / "notes.txt").write_text("other formats of the same data")
    name = "DeepBacs_Data_Segmentation_B.subtilis_FtsZ_dataset.zip"
    _download(monkeypatch, tmp_path, "deepbacs-bsubtilis-fluorescence", {name: _zip(bsub, tmp_path / name)})
    assert len(read_registered("deepbacs-bsubtilis-fluorescence", split="train").samples) == 1


def _coco(images: list[tuple[int, str]]) -> dict:
    anns = [{"id": i + 1, "image_id": iid, "category_id": 1, "iscrowd": 0, "area": 36.0, "bbox": [2, 2, 6, 6],
             "segmentation": [[2, 2, 8, 2, 8, 8, 2, 8]]} for i, (iid, _) in enumerate(images)]
    return {"images": [{"id": iid, "file_name": fn, "width": 24, "height": 24} for iid, fn in images],
            "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}


def test_livecell_nested_images_and_cell_type_subsets(tmp_path, monkeypatch):
    src = tmp_path / "lc"
    tv, te = src / "images" / "livecell_train_val_images", src / "images" / "livecell_test_images"
    for folder, names in ((tv, ["A172_Phase_A7_1_00d00h00m_1.tif", "BV2_Phase_B4_1_00d04h00m_2.tif"]),
                          (te / "A172", ["A172_Phase_C7_1_00d00h00m_3.tif"])):
        folder.mkdir(parents=True, exist_ok=True)
        for n in names:
            tifffile.imwrite(folder / n, _image())
    served = {"images.zip": _zip(src, tmp_path / "images.zip")}
    splits = {"train": [(1, "A172_Phase_A7_1_00d00h00m_1.tif"), (2, "BV2_Phase_B4_1_00d04h00m_2.tif")],
              "val": [(3, "BV2_Phase_B4_1_00d04h00m_2.tif")], "test": [(4, "A172_Phase_C7_1_00d00h00m_3.tif")]}
    for split, images in splits.items():
        path = tmp_path / f"livecell_coco_{split}.json"
        path.write_text(json.dumps(_coco(images)))
        served[path.name] = path
    _download(monkeypatch, tmp_path, "livecell", served)
    assert len(read_registered("livecell", split="train").samples) == 2
    a172 = read_registered("livecell-a172", split="train")
    assert [s.name for s in a172.samples] == ["A172_Phase_A7_1_00d00h00m_1"]
    assert len(read_registered("livecell", split="test").samples[0].instances) == 1


def test_tissuenet_by_hand(tmp_path, capsys):
    src = tmp_path / "tn"
    src.mkdir()
    for split in ("train", "val", "test"):
        X = np.random.default_rng(0).random((2, 24, 24, 2)).astype(np.float32)
        y = np.stack([np.stack([_labels(1), _labels(2)], -1)] * 2).astype(np.int32)
        np.savez(src / f"tissuenet_v1.1_{split}.npz", X=X, y=y)
    archive = _zip(src, tmp_path / "tissuenet_v1.1.zip")
    assert main(["data", "download", "tissuenet"]) == 2
    assert "datasets.deepcell.org" in capsys.readouterr().err
    assert main(["data", "download", "tissuenet", "--archive", str(archive)]) == 0
    ds = read_registered("tissuenet", split="val", task="nuclei")
    assert len(ds.samples) == 2 and ds.classes == ("nucleus",)


def test_reading_before_download_says_how(capsys):
    with pytest.raises(DataError, match="cellbench data download dsb2018"):
        read_registered("dsb2018", split="train")
    with pytest.raises(DataError, match="splits train, test"):
        read_registered("dsb2018")
    assert main(["data", "info", "nosuchdataset"]) == 2
    assert "registered dataset" in capsys.readouterr().err
    assert get_dataset("cellseg-blood").based_on == "neurips22-cellseg"
