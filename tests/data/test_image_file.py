"""Whole-slide images read a window at a time, predicted tile by tile, and written as tiled label TIFFs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cellbench.data.export import read_label_tiff_metadata
from cellbench.data.export.labels import write_instance_labels
from cellbench.data.image_file import ImageFile, open_image
from cellbench.data.images import read_label_image
from cellbench.errors import DataError
from cellbench.instances import InstanceSet, NearestCentroidFlatten, PriorityFlatten, flatten
from cellbench.methods.tiling import TileConfig, predict_tiled

LAYOUTS = {
    "tiled zlib": dict(tile=(32, 32), compression="zlib"),
    "striped zlib": dict(rowsperstrip=7, compression="zlib"),
    "striped raw": dict(rowsperstrip=5),
    "one raw strip": dict(),
}


def _write(path, pixels, **kw):
    tifffile.imwrite(path, pixels, photometric="rgb" if pixels.ndim == 3 else None, metadata=None, **kw)
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("channels", [0, 3])
def test_windows_read_the_pixels_the_whole_image_holds(tmp_path, layout, channels):
    rng = np.random.default_rng(1)
    shape = (101, 83, channels) if channels else (101, 83)
    pixels = rng.integers(0, 60000, shape, dtype=np.uint16)
    path = _write(tmp_path / "slide.tif", pixels, **LAYOUTS[layout])
    with open_image(path, lazy_pixels=100) as image:
        assert isinstance(image, ImageFile) and image.shape == pixels.shape and image.ndim == pixels.ndim
        for y0, y1, x0, x1 in [(0, 101, 0, 83), (3, 40, 10, 11), (40, 41, 0, 83), (90, 101, 70, 83), (5, 9, 2, 60)]:
            assert np.array_equal(image[y0:y1, x0:x1], pixels[y0:y1, x0:x1]), (y0, y1, x0, x1)
        assert np.array_equal(np.asarray(image), pixels)


def test_a_small_image_is_read_whole(tmp_path):
    pixels = np.arange(20, dtype=np.uint8).reshape(4, 5)
    image = open_image(_write(tmp_path / "small.tif", pixels))
    assert isinstance(image, np.ndarray) and np.array_equal(image, pixels)


def test_a_window_is_sliced_by_rows_and_columns_only(tmp_path):
    path = _write(tmp_path / "slide.tif", np.zeros((40, 40), np.uint8), tile=(16, 16))
    with open_image(path, lazy_pixels=10) as image, pytest.raises(TypeError, match="rows and columns"):
        image[::2, :]


def test_a_truncated_slide_is_refused_naming_the_file(tmp_path):
    path = _write(tmp_path / "slide.tif", np.ones((64, 64), np.uint8), tile=(16, 16), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="slide.tif"):
        with open_image(path, lazy_pixels=10) as image:
            image[0:64, 0:64]


def _threshold(tile: np.ndarray) -> InstanceSet:
    from scipy import ndimage

    labels, _ = ndimage.label(tile > 100)
    return InstanceSet.from_label_image(labels)


def test_prediction_tile_by_tile_from_the_file_equals_prediction_from_the_array(tmp_path):
    rng = np.random.default_rng(0)
    pixels = np.zeros((300, 260), np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, 290), rng.integers(0, 250)
        pixels[y : y + rng.integers(3, 10), x : x + rng.integers(3, 10)] = 200
    path = _write(tmp_path / "slide.tif", pixels, tile=(32, 32), compression="zlib")
    config = TileConfig(tile=64, overlap=16)
    expected = predict_tiled(_threshold, pixels, config)
    with open_image(path, lazy_pixels=100) as image:
        found = predict_tiled(_threshold, image, config)
    assert [(i.bbox, i.mask.tolist()) for i in found] == [(i.bbox, i.mask.tolist()) for i in expected]
    assert len(found) > 40


@pytest.mark.parametrize("policy", [PriorityFlatten("last"), PriorityFlatten("first"), NearestCentroidFlatten()])
def test_labels_written_tile_by_tile_equal_the_flattened_image(tmp_path, policy):
    rng = np.random.default_rng(2)
    instances = []
    from cellbench.instances import Instance

    for _ in range(120):  # overlapping squares, some hidden
        y, x, s = rng.integers(0, 180), rng.integers(0, 230), rng.integers(2, 20)
        instances.append(Instance.from_mask(np.ones((s, s), bool), offset=(y, x)))
    s = InstanceSet((200, 250), tuple(instances))
    whole = flatten(s, policy)
    path = tmp_path / "labels.tif"
    lost = write_instance_labels(path, s, policy, extra={"image": "slide.tif"}, tile=64)
    assert np.array_equal(read_label_image(path), whole.labels) and lost == whole.lost
    assert whole.lost  # the case where the description is written again matters
    record = read_label_tiff_metadata(path)
    assert record == {**whole.metadata(), "image": "slide.tif"}
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].chunks == (64, 64)
        assert json.loads(tif.pages[0].description)["cellbench"]["lost_instances"] == list(whole.lost)
