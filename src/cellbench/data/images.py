"""Reading image and label files, with errors that name the file.

TIFF goes through tifffile, everything else through imageio (Pillow).
``image_shape`` reads only the header, so checking that an image matches its
annotation does not decode the pixels.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image

from cellbench.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "image_shape", "is_image_file", "read_image", "read_label_image"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


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
        raise DataError("image file not found", path=path)
    try:
        if _is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return _spatial(series.shape, path)
        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except DataError:
        raise
    except Exception as exc:  # any decoder failure means a corrupt or foreign file
        raise DataError(f"corrupt or unreadable image ({type(exc).__name__}: {exc})", path=path) from exc


def read_image(path: str | Path) -> np.ndarray:
    """Pixels of an image file as stored (no normalisation)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path=path)
    try:
        pixels = tifffile.imread(path) if _is_tiff(path) else iio.imread(path)
    except Exception as exc:
        raise DataError(f"corrupt or unreadable image ({type(exc).__name__}: {exc})", path=path) from exc
    if pixels.size == 0:  # tifffile returns an empty array for a TIFF header with no readable page
        raise DataError("corrupt or unreadable image (no pixel data)", path=path)
    return pixels


def read_label_image(path: str | Path) -> np.ndarray:
    """A 2-D integer label image; refuses float or multi-channel files."""
    labels = read_image(path)
    if labels.ndim > 2:
        labels = labels.squeeze()
    if labels.ndim != 2:
        raise DataError(f"label image must be 2-D, got shape {labels.shape}", path=path)
    if labels.dtype.kind not in "iu":
        raise DataError(f"label image has non-integer dtype {labels.dtype}", path=path)
    return labels
