"""A label-image file read a band of rows at a time: whole-slide label images without whole arrays.

A 20,000 x 20,000 label image of 32-bit ids is 1.6 GB as one array. A
:class:`LabelFile` reads its header (shape, type: the checks of
:func:`~cellbench.data.images.read_label_image`) when opened, and its pixels
only in :meth:`LabelFile.bands`: full-width bands of rows, each decoded from
the TIFF tiles or strips it covers (tifffile decodes them, in threads) or read
straight from the file where the pixels are stored uncompressed. Memory is one
band, not the image, and the bands of two files of one shape line up row for
row, which is what counting pixel pairs needs
(:class:`~cellbench.matching.PixelPairCounts`). Files whose layout a band
cannot be cut from (several pages, several samples per pixel, bit depths
that are no numpy type) and files of other formats are read whole, as one band.

>>> import tempfile, tifffile
>>> path = Path(tempfile.mkdtemp()) / "labels.tif"
>>> tifffile.imwrite(path, np.arange(12, dtype=np.uint16).reshape(6, 2), tile=(16, 16))
>>> f = LabelFile.open(path)
>>> f.shape, [b.tolist() for b in f.bands(rows=4)][0]
((6, 2), [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from cellbench.data.images import (
    check_ids, check_labels, is_tiff, missing_path, read_label_image, tiff_shape, unreadable_error,
)
from cellbench.data.tiff_rows import TiffRows, rows_readable
from cellbench.errors import DataError

__all__ = ["BAND_ROWS", "LabelFile"]

#: Rows of a band unless told otherwise: 1024 rows of a 20,000 px wide 32-bit image are 80 MB.
BAND_ROWS = 1024


@dataclass(frozen=True)
class LabelFile:
    """A TIFF label image by its header: ``shape`` (height, width) and ``dtype``; pixels by :meth:`bands`.

    ``banded`` says whether bands are cut from the file (else :meth:`bands`
    yields the whole image once). :meth:`read` gives the whole array, as
    :func:`~cellbench.data.images.read_label_image` does.
    """

    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    banded: bool

    @classmethod
    def open(cls, path: str | Path) -> LabelFile:
        """Read and check the header of a TIFF label image (2-D, integer ids), naming the file when refused."""
        path = Path(path)
        if not is_tiff(path):
            raise DataError("a label file read in bands must be a TIFF (.tif, .tiff)", path=path)
        if not path.is_file():
            raise missing_path(path, "image file not found")
        try:
            with tifffile.TiffFile(path) as tif:
                shape = tiff_shape(tif, path)
                series = tif.series[0]
                dtype = series.dtype
                page = series.pages[0] if len(series.pages) == 1 else None
                banded = page is not None and _bandable(page)
        except DataError:
            raise
        except Exception as exc:  # any decoder failure means a corrupt or foreign file
            raise unreadable_error(exc, path) from exc
        if len(shape) > 2:
            shape = tuple(d for d in shape if d != 1)
        check_labels(shape, dtype, path)
        return cls(path, (int(shape[0]), int(shape[1])), np.dtype(dtype), banded)

    def read(self) -> np.ndarray:
        """The whole label image."""
        return read_label_image(self.path)

    def bands(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """Full-width bands of about ``rows`` rows (default :data:`BAND_ROWS`; a whole number of the file's
        tiles or strips, at least one), top to bottom, each checked for negative ids."""
        rows = max(1, int(BAND_ROWS if rows is None else rows))
        if not self.banded:
            yield self.read()
            return
        try:
            with tifffile.TiffFile(self.path) as tif:
                reader = TiffRows(tif, tif.series[0].pages[0])
                step = rows if reader.direct else max(1, rows // reader.segment_rows) * reader.segment_rows
                for y0 in range(0, reader.height, step):
                    band = reader.read(y0, y0 + step)
                    check_ids(band, self.path)
                    yield band
        except DataError:
            raise
        except Exception as exc:
            raise unreadable_error(exc, self.path) from exc


def _bandable(page: tifffile.TiffPage) -> bool:
    """One sample per pixel and rows that can be cut from the page (:func:`~cellbench.data.tiff_rows.rows_readable`)."""
    return page.samplesperpixel == 1 and rows_readable(page)
