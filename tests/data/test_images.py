"""Image and label-image reading: header shapes, pixels as stored, errors that name the file."""

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from cellbench.data.images import image_shape, is_image_file, read_image, read_label_image
from cellbench.errors import DataError


def _ramp(shape, dtype=np.uint8):
    return (np.arange(int(np.prod(shape))) % 251).astype(dtype).reshape(shape)


@pytest.mark.parametrize("stored", [(12, 16), (12, 16, 3), (3, 12, 16), (2, 12, 16), (1, 12, 16), (12, 16, 1), (1, 1, 12, 16)])
def test_tiff_shape_is_height_width_whatever_the_channel_axis(tmp_path, stored):
    path = tmp_path / "im.tif"
    tifffile.imwrite(path, _ramp(stored), photometric="minisblack")
    assert image_shape(path) == (12, 16)
    np.testing.assert_array_equal(read_image(path), _ramp(stored))


@pytest.mark.parametrize("stored", [(12, 16), (12, 16, 3), (12, 16, 4)])
def test_png_shape_and_pixels(tmp_path, stored):
    path = tmp_path / "im.png"
    iio.imwrite(path, _ramp(stored))
    assert image_shape(path) == (12, 16)
    np.testing.assert_array_equal(read_image(path), _ramp(stored))


def test_pixels_come_back_as_stored_without_normalisation(tmp_path):
    data = np.array([[0, 1, 4095], [65535, 7, 3]], np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    got = read_image(tmp_path / "a.tif")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, data)
    floats = np.array([[0.25, -1.5], [3.0, 1e6]], np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", floats)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff"), floats)


def test_stack_with_more_than_four_planes_has_no_height_width(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 12, 16), np.uint8))
    with pytest.raises(DataError, match="cannot tell height and width") as err:
        image_shape(path)
    assert err.value.path == str(path)


@pytest.mark.parametrize("name", ["bad.tif", "bad.tiff", "bad.png", "bad.jpg"])
def test_corrupt_image_names_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    for reader in (image_shape, read_image, read_label_image):
        with pytest.raises(DataError, match="corrupt or unreadable image") as err:
            reader(path)
        assert err.value.path == str(path)
        assert str(err.value).startswith(str(path) + ": ")


def test_empty_file_is_corrupt(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="corrupt") as err:
        image_shape(path)
    assert err.value.path == str(path)


def test_missing_image_names_the_file(tmp_path):
    path = tmp_path / "nope.tif"
    for reader in (image_shape, read_image, read_label_image):
        with pytest.raises(DataError, match="image file not found") as err:
            reader(path)
        assert err.value.path == str(path)


def test_a_folder_is_not_an_image(tmp_path):
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "dir.tif")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32])
def test_label_image_keeps_integer_ids(tmp_path, dtype):
    labels = np.zeros((12, 16), dtype)
    labels[1:3, 2:5] = 3
    labels[6:9, 9:15] = 200
    tifffile.imwrite(tmp_path / "m.tif", labels)
    got = read_label_image(tmp_path / "m.tif")
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, labels)


def test_sixteen_bit_png_labels_keep_ids_above_255(tmp_path):
    labels = np.zeros((12, 16), np.uint16)
    labels[0:2, 0:3] = 300
    labels[5, 5] = 65535
    iio.imwrite(tmp_path / "m.png", labels)
    got = read_label_image(tmp_path / "m.png")
    assert got.dtype.kind in "iu"
    np.testing.assert_array_equal(got, labels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_label_image_is_refused(tmp_path, dtype):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, np.ones((12, 16), dtype))
    with pytest.raises(DataError, match=f"non-integer dtype {np.dtype(dtype).name}") as err:
        read_label_image(path)
    assert err.value.path == str(path)


def test_multichannel_label_image_is_refused(tmp_path):
    path = tmp_path / "m.png"
    iio.imwrite(path, np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(DataError, match=r"must be 2-D, got shape \(12, 16, 3\)") as err:
        read_label_image(path)
    assert err.value.path == str(path)


def test_singleton_axes_of_a_label_image_are_dropped(tmp_path):
    labels = np.zeros((1, 12, 16), np.uint16)
    labels[0, 4:6, 4:6] = 9
    tifffile.imwrite(tmp_path / "m.tif", labels)
    got = read_label_image(tmp_path / "m.tif")
    assert got.shape == (12, 16)
    np.testing.assert_array_equal(got, labels[0])


def test_is_image_file(tmp_path):
    for name in ("a.tif", "b.TIFF", "c.png", "d.jpg", "e.JPEG", "f.bmp", "g.txt", "h.npy", ".hidden.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.tif").mkdir()
    found = sorted(p.name for p in tmp_path.iterdir() if is_image_file(p))
    assert found == ["a.tif", "b.TIFF", "c.png", "d.jpg", "e.JPEG", "f.bmp"]
    assert not is_image_file(tmp_path / "missing.tif")


def test_tiff_header_without_pages_is_corrupt(tmp_path):
    """tifffile returns an empty array for such a file; it must not pass as an image."""
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00 definitely not a tiff")
    for reader in (image_shape, read_image, read_label_image):
        with pytest.raises(DataError, match="corrupt or unreadable image") as err:
            reader(path)
        assert err.value.path == str(path)


# ---- decompression bombs, link loops


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, suffix):
    from ..badinput.corpus import bomb_png, bomb_tiff

    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(bomb_png() if suffix == ".png" else bomb_tiff())
    assert path.stat().st_size < 300
    for reader in (image_shape, read_image, read_label_image):
        with pytest.raises(DataError, match="decompression bomb") as err:
            reader(path)
        assert err.value.path == str(path)


def test_the_pixel_limit_follows_pillows_setting_and_max_pixels(tmp_path, monkeypatch):
    """PNG and the other Pillow formats: twice Pillow's limit unless max_pixels says otherwise; TIFF: none."""
    from PIL import Image

    from cellbench.data.images import pixel_limit

    for suffix in (".png", ".tif"):
        iio.imwrite(tmp_path / f"im{suffix}", _ramp((12, 16)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 90)  # 12 x 16 = 192 pixels > 2 x 90
    assert pixel_limit() == 180
    with pytest.raises(DataError, match="decompression bomb.*--max-pixels"):
        read_image(tmp_path / "im.png")
    assert read_image(tmp_path / "im.tif").shape == (12, 16)  # TIFF has no pixel limit
    assert read_image(tmp_path / "im.png", max_pixels=192).shape == (12, 16)  # above Pillow's own refusal size
    assert read_image(tmp_path / "im.png", max_pixels=0).shape == (12, 16)
    assert Image.MAX_IMAGE_PIXELS == 90  # lifted for that read only
    with pytest.raises(DataError, match="191"):
        read_label_image(tmp_path / "im.png", max_pixels=191)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert pixel_limit() is None
    assert read_image(tmp_path / "im.png").shape == (12, 16)


def test_a_large_image_below_the_limit_reads_without_a_warning(tmp_path, monkeypatch, recwarn):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 192 pixels: Pillow warns above 150, refuses above 300
    iio.imwrite(tmp_path / "im.png", _ramp((12, 16)))
    assert read_image(tmp_path / "im.png").shape == (12, 16)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_image_files_refuses_a_link_loop_and_a_broken_link(tmp_path):
    from cellbench.data.images import image_files

    iio.imwrite(tmp_path / "a.png", _ramp((4, 4)))
    (tmp_path / "notes.txt").write_text("not an image")
    assert image_files(tmp_path) == [tmp_path / "a.png"]
    (tmp_path / "loop.tif").symlink_to("loop.tif")
    with pytest.raises(DataError, match="symbolic link loop") as err:
        image_files(tmp_path)
    assert err.value.path == str(tmp_path / "loop.tif")
    (tmp_path / "loop.tif").unlink()
    (tmp_path / "gone.tif").symlink_to("nowhere.tif")
    with pytest.raises(DataError, match="broken symbolic link to nowhere.tif"):
        image_files(tmp_path)
    with pytest.raises(DataError, match="broken symbolic link"):
        read_image(tmp_path / "gone.tif")


def test_negative_label_ids_are_refused_naming_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", -_ramp((4, 4), np.int16))
    with pytest.raises(DataError, match="negative ids") as err:
        read_label_image(tmp_path / "m.tif")
    assert err.value.path == str(tmp_path / "m.tif")


def test_reads_in_threads_put_pillows_setting_back(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from cellbench.data.images import pixel_limit

    before = Image.MAX_IMAGE_PIXELS
    iio.imwrite(tmp_path / "im.png", _ramp((12, 16)))
    with ThreadPoolExecutor(4) as pool:
        shapes = list(pool.map(lambda _: read_image(tmp_path / "im.png").shape, range(40)))
    assert shapes == [(12, 16)] * 40
    assert Image.MAX_IMAGE_PIXELS == before and pixel_limit() == 2 * before
