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
