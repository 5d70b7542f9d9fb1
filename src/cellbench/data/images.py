"""Reading image and label files, with errors that name the file.

TIFF goes through tifffile, everything else through imageio (Pillow).
``image_shape`` reads only the header, so checking that an image matches its
annotation does not decode the pixels. Both read the header first and refuse
an image whose header claims more pixels than :func:`pixel_limit` (a
decompression bomb: a few bytes that would decode to gigabytes) before any
pixel is decoded. :func:`image_files` lists a folder's images and refuses
links that lead nowhere instead of skipping them.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from cellbench.data.confine import confine
from cellbench.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES", "image_files", "image_shape", "is_image_file", "missing_path", "pixel_limit", "read_image",
    "read_label_image",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def pixel_limit() -> int | None:
    """Most pixels an image header may claim: twice Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 179 million,
    e.g. 13,000 x 13,000), the size at which Pillow itself refuses a file; ``None`` (no limit) when
    ``Image.MAX_IMAGE_PIXELS`` is ``None``. Raise Pillow's setting to read larger images.

    >>> pixel_limit() == 2 * Image.MAX_IMAGE_PIXELS
    True
    """
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)


def _check_size(shape: Sequence[int], path: Path) -> None:
    limit = pixel_limit()
    n = math.prod(int(d) for d in shape)
    if limit is not None and n > limit:
        dims = " x ".join(str(int(d)) for d in shape)
        raise DataError(
            f"image header claims {dims} = {n:,} pixels, more than the limit of {limit:,}: refused as a possible "
            "decompression bomb (raise PIL.Image.MAX_IMAGE_PIXELS to read larger images)", path=path)


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


def _is_tiff(path: Path) -> bool:
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


def image_shape(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header; raises :class:`DataError` for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise missing_path(path, "image file not found")
    try:
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
        else:
            with _pillow_warnings(), Image.open(path) as im:
                shape = (im.size[1], im.size[0], *((len(im.getbands()),) if len(im.getbands()) > 1 else ()))
        _check_size(shape, path)
        return _spatial(shape, path)
    except DataError:
        raise
    except Exception as exc:  # any decoder failure means a corrupt or foreign file
        raise _unreadable(exc, path) from exc


@contextlib.contextmanager
def _pillow_warnings() -> Iterator[None]:
    """Pillow warns of large images below its own refusal size; :func:`_check_size` decides instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _unreadable(exc: Exception, path: Path) -> DataError:
    if isinstance(exc, Image.DecompressionBombError):
        return DataError(f"refused as a possible decompression bomb ({exc})", path=path)
    return DataError(f"corrupt or unreadable image ({type(exc).__name__}: {exc})", path=path)


def read_image(path: str | Path) -> np.ndarray:
    """Pixels of an image file as stored (no normalisation); the header is checked before decoding."""
    path = Path(path)
    if not path.is_file():
        raise missing_path(path, "image file not found")
    try:
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                _check_size(tif.series[0].shape, path)
                pixels = tif.asarray()
        else:
            import imageio.v3 as iio  # here: its import reads package metadata (~30 ms), and TIFF never needs it

            with _pillow_warnings():
                image_shape(path)
                pixels = iio.imread(path)
    except DataError:
        raise
    except Exception as exc:
        raise _unreadable(exc, path) from exc
    if pixels.size == 0:  # tifffile returns an empty array for a TIFF header with no readable page
        raise DataError("corrupt or unreadable image (no pixel data)", path=path)
    return pixels


def read_label_image(path: str | Path) -> np.ndarray:
    """A 2-D integer label image; refuses float or multi-channel files and negative ids."""
    labels = read_image(path)
    if labels.ndim > 2:
        labels = labels.squeeze()
    if labels.ndim != 2:
        raise DataError(f"label image must be 2-D, got shape {labels.shape}", path=path)
    if labels.dtype.kind not in "iu":
        raise DataError(f"label image has non-integer dtype {labels.dtype}", path=path)
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise DataError(f"label image has negative ids (smallest {labels.min()})", path=path)
    return labels
