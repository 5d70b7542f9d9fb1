"""An image too large to hold, read a window at a time: whole-slide prediction without the whole slide.

:func:`open_image` gives the pixels of a small image as an array (what
:func:`~cellbench.data.images.read_image` reads) and a TIFF larger than
``lazy_pixels`` as an :class:`ImageFile`: something with ``shape``, ``ndim``
and ``dtype`` that reads only the rows of the window it is sliced with. Tiled
prediction (:func:`~cellbench.methods.tiling.predict_tiled`) slices it tile by
tile, row of tiles after row of tiles; the rows last read are kept, so the
tiles of one row decode the file's tiles or strips once.

>>> import tempfile, tifffile
>>> path = Path(tempfile.mkdtemp()) / "slide.tif"
>>> tifffile.imwrite(path, np.arange(64, dtype=np.uint8).reshape(8, 8), tile=(16, 16))
>>> image = open_image(path, lazy_pixels=10)
>>> image.shape, image[2:4, 5:7].tolist()
((8, 8), [[21, 22], [29, 30]])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from cellbench.data.images import is_tiff, missing_path, read_image, tiff_shape, unreadable_error
from cellbench.data.tiff_rows import TiffRows, rows_readable
from cellbench.errors import DataError

__all__ = ["LAZY_PIXELS", "ImageFile", "open_image"]

#: Above this many pixels a TIFF is read a window at a time (8192 x 8192; 64 MB of 8-bit grey).
LAZY_PIXELS = 8192 * 8192


class ImageFile:
    """A TIFF image by its header; ``image[y0:y1, x0:x1]`` reads those pixels (H x W or H x W x C).

    Only plain slices of rows and columns are accepted. The full-width rows of
    the last window are kept until a window needs other rows.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tif = tifffile.TiffFile(self.path)
        try:
            page = self._tif.series[0].pages[0]
            if len(self._tif.series[0].pages) != 1 or not rows_readable(page):
                raise DataError("a TIFF read a window at a time must hold one plane with its samples stored "
                                "together", path=self.path)
            self._rows = TiffRows(self._tif, page)
        except Exception:
            self._tif.close()
            raise
        self.shape: tuple[int, ...] = (self._rows.height, self._rows.width) + (
            (self._rows.samples,) if self._rows.samples > 1 else ())
        self.dtype = np.dtype(page.dtype)
        self._band: tuple[int, int, np.ndarray] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def close(self) -> None:
        self._band = None
        self._tif.close()

    def __enter__(self) -> ImageFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getitem__(self, key) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) and k.step in (None, 1)
                                                                  for k in key)):
            raise TypeError(f"an ImageFile is sliced by rows and columns (image[y0:y1, x0:x1]), got {key!r}")
        (y0, y1, _), cols = key[0].indices(self.shape[0]), key[1]
        if self._band is None or not (self._band[0] <= y0 and y1 <= self._band[1]):
            self._band = None  # let the old rows go before the new ones are read
            try:
                self._band = (y0, y1, self._rows.read(y0, y1))
            except Exception as exc:
                raise unreadable_error(exc, self.path) from exc
        top, _, band = self._band
        return np.array(band[y0 - top : y1 - top, cols])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:, :]
        return whole if dtype is None else whole.astype(dtype)

    def __repr__(self) -> str:
        return f"ImageFile({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


def open_image(path: str | Path, *, max_pixels: int | None = None,
               lazy_pixels: int | None = None) -> np.ndarray | ImageFile:
    """The pixels of an image file: an array, or an :class:`ImageFile` for a TIFF of more than ``lazy_pixels``
    (default :data:`LAZY_PIXELS`) pixels whose rows can be read apart (``max_pixels``: see
    :func:`~cellbench.data.images.read_image`)."""
    path = Path(path)
    lazy_pixels = LAZY_PIXELS if lazy_pixels is None else lazy_pixels
    if is_tiff(path) and path.is_file():
        try:
            with tifffile.TiffFile(path) as tif:
                shape = tiff_shape(tif, path)
                series = tif.series[0]
                page = series.pages[0] if len(series.pages) == 1 else None
                lazy = (page is not None and rows_readable(page) and len(shape) in (2, 3)
                        and int(page.imagelength) * int(page.imagewidth) > lazy_pixels)
        except DataError:
            raise
        except Exception as exc:
            raise unreadable_error(exc, path) from exc
        if lazy:
            try:
                return ImageFile(path)
            except DataError:
                raise
            except Exception as exc:
                raise unreadable_error(exc, path) from exc
    elif not path.is_file():
        raise missing_path(path, "image file not found")
    return read_image(path, max_pixels=max_pixels)
