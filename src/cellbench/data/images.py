"""Reading image and label files, with errors that name the file.

TIFF goes through tifffile, everything else through imageio (Pillow).
``image_shape`` reads only the header, so checking that an image matches its
annotation does not decode the pixels. Both read the header first and refuse
a decompression bomb (a few bytes that would decode to gigabytes) before any
pixel is decoded: a PNG, JPEG or BMP whose header claims more pixels than
``max_pixels`` (by default :func:`pixel_limit`, Pillow's own refusal size), an
uncompressed TIFF whose header claims more pixel data than the file holds.
TIFF has no pixel limit: whole-slide label images of 20,000 x 20,000 pixels
and more are read, by :class:`~cellbench.data.label_file.LabelFile` a band of
rows at a time. :func:`image_files` lists a folder's images and refuses links
that lead nowhere instead of skipping them.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from cellbench.data.confine import confine
from cellbench.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES", "check_ids", "check_labels", "image_files", "image_shape", "is_image_file", "is_tiff",
    "missing_path", "pixel_limit", "read_image", "read_label_image", "tiff_shape", "unreadable_error",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def pixel_limit() -> int | None:
    """Most pixels the header of a PNG, JPEG or BMP may claim unless told otherwise (``max_pixels``): twice
    Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 179 million, e.g. 13,000 x 13,000), the size at which Pillow
    itself refuses a file; ``None`` (no limit) when ``Image.MAX_IMAGE_PIXELS`` is ``None``. TIFF has none.

    >>> pixel_limit() == 2 * Image.MAX_IMAGE_PIXELS
    True
    """
    with _LIFT:
        setting = _lifted[1] if _lifted[0] else Image.MAX_IMAGE_PIXELS
    return None if setting is None else 2 * int(setting)


def _check_size(shape: Sequence[int], path: Path, max_pixels: int | None) -> None:
    """Refuse a Pillow-format header that claims more than ``max_pixels`` (None: :func:`pixel_limit`; 0: no limit)."""
    limit = pixel_limit() if max_pixels is None else (int(max_pixels) or None)
    n = math.prod(int(d) for d in shape)
    if limit is not None and n > limit:
        dims = " x ".join(str(int(d)) for d in shape)
        raise DataError(
            f"image header claims {dims} = {n:,} pixels, more than the limit of {limit:,}: refused as a possible "
            "decompression bomb (--max-pixels N reads larger images; TIFF has no such limit)", path=path)


def tiff_shape(tif: tifffile.TiffFile, path: Path) -> tuple[int, ...]:
    """The shape of the first series; refused when uncompressed pages claim more pixel data than the file holds
    (a header that claims gigabytes over a few bytes). Compressed data is decoded a tile or strip at a time."""
    series = tif.series[0]
    pages = [p for p in series.pages if p is not None]
    if pages and all(p.keyframe.compression == 1 for p in pages):
        held = sum(int(n) for p in pages for n in p.databytecounts)
        claimed = math.prod(int(d) for d in series.shape) * series.dtype.itemsize
        if held < claimed:
            dims = " x ".join(str(int(d)) for d in series.shape)
            raise DataError(f"uncompressed image header claims {dims} pixels = {claimed:,} bytes but the file holds "
                            f"{held:,}: refused as a truncated file or a possible decompression bomb", path=path)
    return tuple(series.shape)


def missing_path(path: str | Path, not_found: str = "no such file or folder") -> DataError:
    """The error for a path that cannot be opened: a link loop, a link that leads nowhere, or ``not_found``."""
    path = Path(path)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return DataError("symbolic link loop (the link leads back to itself)", path=path)
        if path.is_symlink():
            return DataError(f"broken symbolic link to {os.readlink(path)}", path=path)
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            return DataError(f"cannot open ({exc.strerror})", path=path)
    return DataError(not_found, path=path)


def image_files(folder: str | Path, *, confine_to: str | Path | None = None) -> list[Path]:
    """The image files in ``folder`` (not hidden), sorted; a link with an image suffix that leads nowhere is an
    error, not a file to skip. With ``confine_to``, the folder and each image's path are checked by
    :func:`~cellbench.data.confine.confine` before they are listed or tested: one that leads out is an error."""
    folder = confine(folder, confine_to, "folder")
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise missing_path(folder, "no such folder") if not folder.is_dir() else DataError(
            f"cannot list folder ({exc.strerror})", path=folder) from None
    found = []
    for p in entries:
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        if confine(p, confine_to, "image file").is_file():
            found.append(p)
        elif p.is_symlink():
            raise missing_path(p, "image file not found")
    return found


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_tiff(path: Path) -> bool:
    """Read by tifffile (by suffix)."""
    return path.suffix.lower() in (".tif", ".tiff")


def _spatial(shape: tuple[int, ...], path: Path) -> tuple[int, int]:
    """(height, width) of an image shaped (H, W), (H, W, C) or (C, H, W) with C <= 4."""
    shape = tuple(d for d in shape if d != 1) if len(shape) > 3 else tuple(shape)
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    if len(shape) == 3 and shape[-1] <= 4:
        return int(shape[0]), int(shape[1])
    if len(shape) == 3 and shape[0] <= 4:
        return int(shape[1]), int(shape[2])
    raise DataError(f"cannot tell height and width of an image of shape {shape}", path=path)


def image_shape(path: str | Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(height, width) from the file header; raises :class:`DataError` for unreadable files and bombs
    (``max_pixels``: see :func:`read_image`)."""
    path = Path(path)
    if not path.is_file():
        raise missing_path(path, "image file not found")
    try:
        if is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                shape = tiff_shape(tif, path)
        else:
            with _pillow_warnings(), _pillow_unlimited(), Image.open(path) as im:  # the header only; checked next
                shape = (im.size[1], im.size[0], *((len(im.getbands()),) if len(im.getbands()) > 1 else ()))
            _check_size(shape, path, max_pixels)
        return _spatial(shape, path)
    except DataError:
        raise
    except Exception as exc:  # any decoder failure means a corrupt or foreign file
        raise unreadable_error(exc, path) from exc


@contextlib.contextmanager
def _pillow_warnings() -> Iterator[None]:
    """Pillow warns of large images below its own refusal size; :func:`_check_size` decides instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


_LIFT = threading.Lock()
_lifted = [0, None]  # reads under _pillow_unlimited now, and Pillow's setting they put aside


@contextlib.contextmanager
def _pillow_unlimited() -> Iterator[None]:
    """Pillow's own refusal size lifted while a file whose header cellbench checks (:func:`_check_size`) is
    opened or decoded: one limit decides, ``max_pixels``. Reads in other threads still see Pillow's setting
    in :func:`pixel_limit`, and the last read to finish puts it back."""
    with _LIFT:
        if _lifted[0] == 0:
            _lifted[1] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _lifted[0] += 1
    try:
        yield
    finally:
        with _LIFT:
            _lifted[0] -= 1
            if _lifted[0] == 0:
                Image.MAX_IMAGE_PIXELS = _lifted[1]


def unreadable_error(exc: Exception, path: Path) -> DataError:
    """The error for a file a decoder failed on (corrupt, foreign, or refused by Pillow as a bomb)."""
    if isinstance(exc, Image.DecompressionBombError):
        return DataError(f"refused as a possible decompression bomb ({exc})", path=path)
    return DataError(f"corrupt or unreadable image ({type(exc).__name__}: {exc})", path=path)


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Pixels of an image file as stored (no normalisation); the header is checked before decoding.

    ``max_pixels`` caps the pixels a PNG, JPEG or BMP header may claim
    (None: :func:`pixel_limit`; 0: no cap); TIFF has no cap.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_path(path, "image file not found")
    try:
        if is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                tiff_shape(tif, path)
                pixels = tif.asarray()
        else:
            import imageio.v3 as iio  # here: its import reads package metadata (~30 ms), and TIFF never needs it

            with _pillow_warnings():
                image_shape(path, max_pixels=max_pixels)
                with _pillow_unlimited():  # the header passed max_pixels, which may allow more than Pillow does
                    pixels = iio.imread(path)
    except DataError:
        raise
    except Exception as exc:
        raise unreadable_error(exc, path) from exc
    if pixels.size == 0:  # tifffile returns an empty array for a TIFF header with no readable page
        raise DataError("corrupt or unreadable image (no pixel data)", path=path)
    return pixels


def read_label_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """A 2-D integer label image; refuses float or multi-channel files and negative ids (``max_pixels``: see
    :func:`read_image`)."""
    labels = read_image(path, max_pixels=max_pixels)
    if labels.ndim > 2:
        labels = labels.squeeze()
    check_labels(labels.shape, labels.dtype, path)
    check_ids(labels, path)
    return labels


def check_labels(shape: tuple[int, ...], dtype: np.dtype, path: str | Path) -> None:
    """Refuse a label image that is not 2-D or not of an integer type, naming the file."""
    if len(shape) != 2:
        raise DataError(f"label image must be 2-D, got shape {tuple(shape)}", path=path)
    if np.dtype(dtype).kind not in "iu":
        raise DataError(f"label image has non-integer dtype {np.dtype(dtype)}", path=path)


def check_ids(labels: np.ndarray, path: str | Path) -> None:
    """Refuse negative ids in (a band of) a label image, naming the file."""
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise DataError(f"label image has negative ids (smallest {labels.min()})", path=path)
