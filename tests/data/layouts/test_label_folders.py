"""Label-image folders: cellpose, neurips (MEDIAR), dsb (StarDist) and plain folder layouts."""

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from cellbench.data.layouts import read_cellpose, read_dataset, read_dsb, read_folder, read_neurips
from cellbench.errors import DataError

LAYOUTS = ["cellpose", "neurips", "dsb", "folder"]
READERS = {"cellpose": read_cellpose, "neurips": read_neurips, "dsb": read_dsb, "folder": read_folder}
SHAPE = (12, 16)


def labels_a():
    """Ids 3 and 7 (a gap): bbox (1, 2, 4, 6) area 12 and bbox (6, 8, 11, 15) area 35."""
    lab = np.zeros(SHAPE, np.uint16)
    lab[1:4, 2:6] = 3
    lab[6:11, 8:15] = 7
    return lab


def labels_b():
    """Ids 1, 2, 4: areas 6, 9, 1."""
    lab = np.zeros(SHAPE, np.uint16)
    lab[0:2, 0:3] = 1
    lab[9:12, 13:16] = 2
    lab[5, 5] = 4
    return lab


def image(seed=0, shape=SHAPE):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        iio.imwrite(path, array)
    return path


def paths(layout: str, root: Path, name: str, image_ext: str = ".tif", label_ext: str = ".tif") -> tuple[Path, Path]:
    """Where ``layout`` keeps the image and the label image of sample ``name``."""
    if layout == "cellpose":
        return root / f"{name}{image_ext}", root / f"{name}_masks{label_ext}"
    if layout == "neurips":
        return root / "images" / f"{name}{image_ext}", root / "labels" / f"{name}_label.tiff"
    if layout == "dsb":
        return root / "images" / f"{name}{image_ext}", root / "masks" / f"{name}{image_ext}"
    return root / "images" / f"{name}{image_ext}", root / "masks" / f"{name}{label_ext}"


def write_pair(layout, root, name, img, lab, **exts):
    img_path, lab_path = paths(layout, root, name, **exts)
    return save(img_path, img), save(lab_path, lab)


def build(layout, root):
    write_pair(layout, root, "a", image(0), labels_a())
    write_pair(layout, root, "b", image(1), labels_b())
    return root


@pytest.mark.parametrize("layout", LAYOUTS)
def test_correct_read(tmp_path, layout):
    root = build(layout, tmp_path / "data")
    ds = READERS[layout](root)
    assert ds.layout == layout and ds.root == root and ds.split is None
    assert ds.classes == ("cell",)
    assert [s.name for s in ds] == ["a", "b"]
    a, b = ds.samples
    assert a.image_path == paths(layout, root, "a")[0]
    assert a.meta["labels_path"] == str(paths(layout, root, "a")[1])
    assert a.split is None
    assert a.instances.shape == SHAPE
    assert [i.source_id for i in a.instances] == [3, 7]
    assert [i.bbox for i in a.instances] == [(1, 2, 4, 6), (6, 8, 11, 15)]
    assert a.instances.areas.tolist() == [12, 35]
    assert [i.class_id for i in a.instances] == [0, 0]
    np.testing.assert_array_equal(a.instances[1].to_full(SHAPE), labels_a() == 7)
    assert [i.source_id for i in b.instances] == [1, 2, 4]
    assert b.instances.areas.tolist() == [6, 9, 1]
    assert b.instances[2].bbox == (5, 5, 6, 6)
    np.testing.assert_array_equal(a.load_image(), image(0))
    np.testing.assert_array_equal(b.load_image(), image(1))
    summary = ds.summary()
    assert summary["n_images"] == 2
    assert summary["n_instances"] == 5
    assert summary["per_class"] == {"cell": 5}
    assert summary["n_overlapping_instances"] == 0
    assert summary["per_split"] == {"all": {"n_images": 2, "n_instances": 5}}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_read_dataset_gives_the_same(tmp_path, layout):
    root = build(layout, tmp_path / "data")
    ds = read_dataset(str(root), layout)
    assert [len(s.instances) for s in ds] == [2, 3]
    assert ds.task == "all"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_image_without_cells_has_no_instances(tmp_path, layout):
    write_pair(layout, tmp_path, "empty", image(2), np.zeros(SHAPE, np.uint16))
    (sample,) = READERS[layout](tmp_path).samples
    assert len(sample.instances) == 0 and sample.instances.shape == SHAPE


@pytest.mark.parametrize("layout", LAYOUTS)
def test_split_reads_path_slash_split(tmp_path, layout):
    write_pair(layout, tmp_path / "train", "t1", image(0), labels_a())
    write_pair(layout, tmp_path / "train", "t2", image(1), labels_b())
    write_pair(layout, tmp_path / "test", "s1", image(2), labels_b())
    test = read_dataset(tmp_path, layout, split="test")
    assert test.root == tmp_path / "test" and test.split == "test"
    assert [s.name for s in test] == ["s1"]
    assert [s.split for s in test] == ["test"]
    assert test.summary()["per_split"] == {"test": {"n_images": 1, "n_instances": 3}}
    train = read_dataset(tmp_path, layout, split="train")
    assert [s.name for s in train] == ["t1", "t2"]
    assert train.summary()["n_instances"] == 5


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unknown_split_lists_the_sub_folders(tmp_path, layout):
    write_pair(layout, tmp_path / "train", "t1", image(0), labels_a())
    write_pair(layout, tmp_path / "test", "s1", image(2), labels_b())
    with pytest.raises(DataError, match="split folder 'val' not found; sub-folders: test, train") as err:
        read_dataset(tmp_path, layout, split="val")
    assert err.value.path == str(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_missing_folder(tmp_path, layout):
    with pytest.raises(DataError, match="no such folder") as err:
        READERS[layout](tmp_path / "nowhere")
    assert err.value.path == str(tmp_path / "nowhere")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_folder_without_images(tmp_path, layout):
    for sub in ("images", "labels", "masks"):
        (tmp_path / sub).mkdir()
    with pytest.raises(DataError, match=f"no images found for layout {layout}") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(tmp_path)


@pytest.mark.parametrize("layout", ["neurips", "dsb", "folder"])
def test_missing_label_folder_is_named(tmp_path, layout):
    save(tmp_path / "images" / "a.tif", image(0))
    with pytest.raises(DataError, match="expected a .*folder") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_image_without_mask(tmp_path, layout):
    build(layout, tmp_path)
    save(paths(layout, tmp_path, "c")[0], image(3))
    with pytest.raises(DataError, match=r"1 images without .*: c\.tif$") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mask_without_image(tmp_path, layout):
    build(layout, tmp_path)
    orphan = save(paths(layout, tmp_path, "z")[1], labels_a())
    with pytest.raises(DataError, match="1 (mask|label|masks) .*without an image") as err:
        READERS[layout](tmp_path)
    assert str(err.value).endswith(": " + orphan.name)
    assert err.value.path == str(tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_float_label_image(tmp_path, layout):
    build(layout, tmp_path)
    _, lab_path = write_pair(layout, tmp_path, "c", image(3), labels_a().astype(np.float32))
    with pytest.raises(DataError, match="label image has non-integer dtype float32") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(lab_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_negative_label_ids(tmp_path, layout):
    lab = labels_a().astype(np.int32)
    lab[0, 0] = -1
    _, lab_path = write_pair(layout, tmp_path, "a", image(0), lab)
    with pytest.raises(DataError, match="negative") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(lab_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mismatched_image_and_mask_shapes(tmp_path, layout):
    build(layout, tmp_path)
    img_path, lab_path = write_pair(layout, tmp_path, "c", image(3, (12, 15)), labels_a())
    with pytest.raises(DataError, match=f"image is 12 x 15 but its labels {lab_path.name} are 12 x 16") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(img_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_corrupt_image(tmp_path, layout):
    build(layout, tmp_path)
    img_path, _ = write_pair(layout, tmp_path, "c", image(3), labels_a())
    img_path.write_bytes(np.random.default_rng(5).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="corrupt or unreadable image") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(img_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_corrupt_label_image(tmp_path, layout):
    build(layout, tmp_path)
    _, lab_path = write_pair(layout, tmp_path, "c", image(3), labels_a())
    lab_path.write_bytes(b"II*\x00 definitely not a tiff")
    with pytest.raises(DataError, match="corrupt or unreadable image") as err:
        READERS[layout](tmp_path)
    assert err.value.path == str(lab_path)


def test_multichannel_label_image_is_refused(tmp_path):
    save(tmp_path / "a.tif", image(0))
    lab_path = save(tmp_path / "a_masks.png", np.zeros(SHAPE + (3,), np.uint8))
    with pytest.raises(DataError, match="must be 2-D") as err:
        read_cellpose(tmp_path)
    assert err.value.path == str(lab_path)


def test_rgb_image_matches_its_labels(tmp_path):
    write_pair("dsb", tmp_path, "a", image(0, SHAPE + (3,)), labels_a())
    (sample,) = read_dsb(tmp_path).samples
    assert len(sample.instances) == 2
    assert sample.load_image().shape == SHAPE + (3,)


def test_cellpose_png_masks_with_ids_above_255(tmp_path):
    lab = np.zeros(SHAPE, np.uint16)
    lab[2:5, 3:7] = 300
    lab[8:10, 0:16] = 1000
    write_pair("cellpose", tmp_path, "x", image(0), lab, image_ext=".png", label_ext=".png")
    (sample,) = read_cellpose(tmp_path).samples
    assert sample.name == "x" and sample.image_path == tmp_path / "x.png"
    assert [i.source_id for i in sample.instances] == [300, 1000]
    assert sample.instances.areas.tolist() == [12, 32]
    assert [i.bbox for i in sample.instances] == [(2, 3, 5, 7), (8, 0, 10, 16)]


def test_cellpose_ignores_its_own_outputs(tmp_path):
    """Cellpose writes x_cp_masks.png, x_flows.tif and x_seg.npy beside x.tif; they are not ground truth."""
    build("cellpose", tmp_path)
    save(tmp_path / "a_cp_masks.png", labels_b().astype(np.uint8))
    save(tmp_path / "a_flows.tif", image(5))
    (tmp_path / "a_seg.npy").write_bytes(b"\x93NUMPY")
    (tmp_path / "notes.txt").write_text("hi")
    ds = read_cellpose(tmp_path)
    assert [s.name for s in ds] == ["a", "b"]
    assert [i.source_id for i in ds.samples[0].instances] == [3, 7]


def test_cellpose_tiff_suffix(tmp_path):
    write_pair("cellpose", tmp_path, "x", image(0), labels_a(), image_ext=".tiff", label_ext=".tiff")
    (sample,) = read_cellpose(tmp_path).samples
    assert sample.meta["labels_path"] == str(tmp_path / "x_masks.tiff")


def test_neurips_png_and_bmp_images_with_tiff_labels(tmp_path):
    write_pair("neurips", tmp_path, "cell_00001", image(0), labels_a(), image_ext=".png")
    write_pair("neurips", tmp_path, "cell_00002", image(1), labels_b(), image_ext=".bmp")
    ds = read_neurips(tmp_path)
    assert [s.name for s in ds] == ["cell_00001", "cell_00002"]
    assert [s.image_path.name for s in ds] == ["cell_00001.png", "cell_00002.bmp"]
    assert [s.meta["labels_path"] for s in ds] == [
        str(tmp_path / "labels" / "cell_00001_label.tiff"), str(tmp_path / "labels" / "cell_00002_label.tiff")
    ]
    assert ds.summary()["n_instances"] == 5


def test_neurips_label_without_label_suffix_is_not_a_label(tmp_path):
    save(tmp_path / "images" / "a.png", image(0))
    save(tmp_path / "labels" / "a.tiff", labels_a())
    with pytest.raises(DataError, match=r"1 images without labels/<stem>_label.tiff: a\.png") as err:
        read_neurips(tmp_path)
    assert err.value.path == str(tmp_path)


def test_dsb_pairs_by_full_file_name(tmp_path):
    save(tmp_path / "images" / "a.tif", image(0))
    save(tmp_path / "masks" / "a.png", labels_a().astype(np.uint8))
    with pytest.raises(DataError, match="images without a mask of the same name") as err:
        read_dsb(tmp_path)
    assert err.value.path == str(tmp_path) and "a.tif" in str(err.value)


def test_folder_tolerates_mask_suffixes_and_folder_names(tmp_path):
    save(tmp_path / "imgs" / "a.tif", image(0))
    save(tmp_path / "imgs" / "b.png", image(1))
    save(tmp_path / "imgs" / "c.tif", image(2))
    save(tmp_path / "labels" / "a_masks.tif", labels_a())
    save(tmp_path / "labels" / "b_label.png", labels_b())
    save(tmp_path / "labels" / "c.tif", np.zeros(SHAPE, np.uint8))
    ds = read_folder(tmp_path)
    assert [s.name for s in ds] == ["a", "b", "c"]
    assert [len(s.instances) for s in ds] == [2, 3, 0]
    assert [Path(s.meta["labels_path"]).name for s in ds] == ["a_masks.tif", "b_label.png", "c.tif"]


def test_many_unpaired_files_are_listed_with_an_ellipsis(tmp_path):
    for k in range(7):
        save(tmp_path / "images" / f"im{k}.tif", image(k))
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"7 images without a mask .*: im0.tif, im1.tif, im2.tif, im3.tif, im4.tif \.\.\.$"):
        read_folder(tmp_path)


def test_label_folders_offer_no_tasks(tmp_path):
    build("dsb", tmp_path)
    with pytest.raises(DataError, match="layout dsb has no task 'nuclei'; tasks: all") as err:
        read_dataset(tmp_path, "dsb", task="nuclei")
    assert err.value.path == str(tmp_path)


def test_progress_bar_does_not_change_the_result(tmp_path):
    build("folder", tmp_path)
    ds = read_folder(tmp_path, progress=True)
    assert [len(s.instances) for s in ds] == [2, 3]
