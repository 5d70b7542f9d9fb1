"""read_dataset: layout dispatch, split / task / options, and the summary's overlap count."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellbench.data import LAYOUTS, Dataset, read_dataset
from cellbench.errors import DataError

H, W = 12, 16


def rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def tif(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return path


def coco(root: Path, per_image: dict[str, list[list]], name="ann.json") -> Path:
    """One COCO json with one category 'cell'; ``per_image`` maps file name to polygons."""
    images, anns = [], []
    for iid, (file_name, polys) in enumerate(per_image.items(), start=1):
        tif(root / "images" / file_name, np.zeros((H, W), np.uint8))
        images.append({"id": iid, "file_name": file_name, "height": H, "width": W})
        for poly in polys:
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "segmentation": [poly]})
    path = root / name
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}))
    return path


L_SHAPE = [0, 0, 6, 0, 6, 2, 2, 2, 2, 6, 0, 6]  # 20 px, bbox (0, 0, 6, 6)
IN_THE_CORNER = rect(3, 3, 6, 6)  # 9 px inside the L's bbox, sharing no pixel with it


def test_layouts_are_registered():
    assert list(LAYOUTS) == ["glioma-c6", "coco", "cellpose", "neurips", "dsb", "folder", "tissuenet"]


def test_unknown_layout_names_the_path_and_lists_the_layouts(tmp_path):
    with pytest.raises(DataError) as err:
        read_dataset(tmp_path, "zarr")
    assert err.value.path == str(tmp_path)
    assert str(err.value) == (
        f"{tmp_path}: unknown layout 'zarr'; layouts: glioma-c6, coco, cellpose, neurips, dsb, folder, tissuenet"
    )


def test_read_dataset_returns_a_dataset_for_a_str_path(tmp_path):
    path = coco(tmp_path, {"a.tif": [rect(0, 0, 2, 2)]})
    ds = read_dataset(str(path), "coco")
    assert isinstance(ds, Dataset) and ds.root == path and ds.task == "all"


def test_options_reach_the_reader(tmp_path):
    path = coco(tmp_path, {"a.tif": [rect(0, 0, 2, 2), [0, 0, 4, 4, 4, 0, 0, 4]]})
    with pytest.raises(DataError, match="self-intersecting"):
        read_dataset(path, "coco")
    assert read_dataset(path, "coco", invalid="skip").summary()["n_instances"] == 1
    assert read_dataset(path, "coco", invalid="keep").summary()["n_instances"] == 2


@pytest.mark.parametrize("layout", ["coco", "cellpose", "dsb", "folder", "neurips"])
def test_unknown_task_on_a_layout_without_tasks(tmp_path, layout):
    if layout == "coco":
        path = coco(tmp_path, {"a.tif": [rect(0, 0, 2, 2)]})
    else:
        lab = np.zeros((H, W), np.uint8)
        lab[0:2, 0:2] = 1
        path = tmp_path
        image, labels = {
            "cellpose": ("a.tif", "a_masks.tif"),
            "neurips": ("images/a.tif", "labels/a_label.tiff"),
        }.get(layout, ("images/a.tif", "masks/a.tif"))
        tif(path / image, lab)
        tif(path / labels, lab)
    assert read_dataset(path, layout, task="all").summary()["n_instances"] == 1
    with pytest.raises(DataError, match=f"layout {layout} has no task 'cells'; tasks: all"):
        read_dataset(path, layout, task="cells")


def test_summary_counts_instances_sharing_pixels_not_bboxes(tmp_path):
    path = coco(tmp_path, {
        "a.tif": [L_SHAPE, IN_THE_CORNER],  # bboxes nest, pixels are disjoint: 0 overlapping
        "b.tif": [rect(0, 0, 4, 4), rect(3, 3, 6, 6), rect(10, 0, 12, 2)],  # first two share pixel (3, 3): 2
        "c.tif": [rect(0, 0, 4, 4), rect(2, 2, 6, 6), rect(5, 5, 9, 9), rect(8, 8, 12, 12)],  # a chain: 4
        "d.tif": [rect(0, 0, 4, 4), rect(4, 0, 8, 4)],  # edge-adjacent, no shared pixel: 0
    })
    ds = read_dataset(path, "coco")
    a, b, c, d = ds.samples
    assert a.instances.areas.tolist() == [20, 9]
    assert [i.bbox for i in a.instances] == [(0, 0, 6, 6), (3, 3, 6, 6)]
    assert [s.instances.n_overlapping for s in ds] == [0, 2, 4, 0]
    assert b.instances.overlapping().tolist() == [True, True, False]
    summary = ds.summary()
    assert summary["n_instances"] == 11
    assert summary["n_overlapping_instances"] == 6


def test_overlap_is_counted_within_an_image_only(tmp_path):
    """The same rectangle in two images overlaps nothing."""
    path = coco(tmp_path, {"a.tif": [rect(0, 0, 4, 4)], "b.tif": [rect(0, 0, 4, 4)]})
    assert read_dataset(path, "coco").summary()["n_overlapping_instances"] == 0


def test_identical_annotations_both_count_as_overlapping(tmp_path):
    path = coco(tmp_path, {"a.tif": [rect(1, 1, 5, 5), rect(1, 1, 5, 5), rect(8, 8, 10, 10)]})
    ds = read_dataset(path, "coco")
    assert ds.summary()["n_overlapping_instances"] == 2
    assert ds.summary()["n_instances"] == 3


def test_option_the_layout_does_not_take_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="layout cellpose takes no option channels; its options: progress"):
        read_dataset(tmp_path, "cellpose", channels="dual")


# --- confine_to: a reader reads nothing outside the folder -------------------------------------------------------

def _one_image_dataset(root: Path, layout: str) -> tuple[Path, Path]:
    """A one-image dataset of ``layout`` in ``root``: (the path to read, one file the reader opens)."""
    lab = np.zeros((H, W), np.uint8)
    lab[0:2, 0:2] = 1
    if layout == "coco":
        coco(root, {"a.tif": [rect(0, 0, 2, 2)]})
        return root, root / "images" / "a.tif"
    if layout == "glioma-c6":
        folder = root / "spec" / "train"
        coco(folder, {"a.tif": [rect(0, 0, 2, 2)]}, name="anno_train.json")
        data = json.loads((folder / "anno_train.json").read_text())
        data["categories"] = [{"id": 1, "name": "Cell type A", "supercategory": "cell"}]
        (folder / "anno_train.json").write_text(json.dumps(data))
        return root, folder / "images" / "a.tif"
    if layout == "tissuenet":
        root.mkdir(parents=True, exist_ok=True)
        y = np.stack([lab, lab], axis=-1)[None].astype(np.int32)
        np.savez(root / "tissuenet_train.npz", X=np.zeros((1, H, W, 2), np.float32), y=y)
        return root, root / "tissuenet_train.npz"
    image, labels = {"cellpose": ("a.tif", "a_masks.tif"), "neurips": ("images/a.tif", "labels/a_label.tiff")}.get(
        layout, ("images/a.tif", "masks/a.tif"))
    tif(root / image, lab)
    return root, tif(root / labels, lab)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_confine_to_refuses_a_file_linked_outside_and_reads_the_same_inside(tmp_path, layout):
    path, opened = _one_image_dataset(tmp_path / "ws" / "ds", layout)
    before = read_dataset(path, layout).summary()
    assert read_dataset(path, layout, confine_to=tmp_path / "ws").summary() == before
    (tmp_path / "elsewhere").mkdir()
    opened.rename(tmp_path / "elsewhere" / opened.name)
    opened.symlink_to(tmp_path / "elsewhere" / opened.name)
    assert read_dataset(path, layout).summary() == before  # without confine_to a link is followed, as before
    with pytest.raises(DataError, match="lies outside the allowed folder") as error:
        read_dataset(path, layout, confine_to=tmp_path / "ws")
    assert error.value.path == str(opened)
    assert read_dataset(path, layout, confine_to=tmp_path).summary() == before  # inside a wider folder


@pytest.mark.parametrize("file_name", ["abs", "../../outside.tif", "../outside.tif"])
def test_confine_to_refuses_a_coco_image_named_outside_before_testing_it(tmp_path, monkeypatch, file_name):
    from cellbench.data.layouts import coco as coco_layout

    tif(tmp_path / "outside.tif", np.zeros((H, W), np.uint8))
    name = str(tmp_path / "outside.tif") if file_name == "abs" else file_name
    (tmp_path / "ws" / "set").mkdir(parents=True)
    json_path = coco(tmp_path / "ws" / "set", {name: []})  # also writes ws/set/images/<name>: inside, for "../"
    assert read_dataset(json_path, "coco").samples[0].image_path is not None
    tested = []
    real_is_file = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda self: tested.append(str(self)) or real_is_file(self))
    monkeypatch.setattr(coco_layout, "image_shape", lambda path: tested.append(str(path)) or (H, W))
    if file_name == "../outside.tif":  # ws/set/../outside.tif lies inside: read, not refused
        tif(tmp_path / "ws" / "outside.tif", np.zeros((H, W), np.uint8))
        read_dataset(json_path, "coco", confine_to=tmp_path / "ws")
        assert tested[-1] == str(tmp_path / "ws" / "set" / "../outside.tif")
        return
    with pytest.raises(DataError, match=r"image '.*outside.tif' named in ann.json lies outside the allowed folder"):
        read_dataset(json_path, "coco", confine_to=tmp_path / "ws")
    assert not any(p.endswith("outside.tif") for p in tested)


def test_confine_to_refuses_image_dir_and_annotation_folders_outside(tmp_path):
    path, _ = _one_image_dataset(tmp_path / "ws" / "ds", "coco")
    (tmp_path / "ws" / "ds" / "images").rename(tmp_path / "images")
    with pytest.raises(DataError, match="image folder lies outside the allowed folder"):
        read_dataset(path, "coco", image_dir=tmp_path / "images", confine_to=tmp_path / "ws")
    assert len(read_dataset(path, "coco", image_dir=tmp_path / "images").samples) == 1
    (tmp_path / "ws" / "ds" / "ann.json").rename(tmp_path / "ann.json")
    (tmp_path / "ws" / "ds" / "annotations").symlink_to(tmp_path)  # listed for annotations/*.json
    with pytest.raises(DataError, match="folder lies outside the allowed folder") as error:
        read_dataset(path, "coco", image_dir=tmp_path / "ws", confine_to=tmp_path / "ws")
    assert error.value.path == str(path / "annotations")


def test_confine_to_needs_a_reader_that_takes_it(tmp_path, monkeypatch):
    monkeypatch.setitem(LAYOUTS, "plain", lambda path, *, split=None: None)
    with pytest.raises(DataError, match="layout plain cannot confine its reading to a folder"):
        read_dataset(tmp_path, "plain", confine_to=tmp_path)
