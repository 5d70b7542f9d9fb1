"""Rows of a TIFF page read without the whole image: the one reader behind whole-slide labels and images.

A 20,000 x 20,000 slide is 400 MB of 8-bit pixels or 1.6 GB of 32-bit ids.
:class:`TiffRows` reads full-width rows ``y0..y1``: the tiles or strips they
cover are decoded by tifffile (in threads) and cut to those rows; rows of an
uncompressed striped page are read straight from the file. Pages a band
cannot be cut from (several planes stored apart, a depth, bit depths that are
no numpy type) are refused by :func:`rows_readable`; callers read those whole.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "img.tif"
>>> tifffile.imwrite(path, np.arange(48, dtype=np.uint8).reshape(8, 2, 3), tile=(16, 16), photometric="rgb")
>>> with tifffile.TiffFile(path) as tif:
...     TiffRows(tif, tif.pages[0]).read(2, 4)[:, 0].tolist()
[[12, 13, 14], [18, 19, 20]]
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tifffile

__all__ = ["TiffRows", "rows_readable"]


def rows_readable(page: tifffile.TiffPage) -> bool:
    """One plane, samples stored together, whole bytes, no fill-order trick: rows can be cut from the page."""
    return (
        page.imagedepth == 1
        and (page.samplesperpixel == 1 or page.planarconfig == 1)
        and page.fillorder == 1
        and page.dtype is not None
        and page.bitspersample == page.dtype.itemsize * 8
        and (page.compression != 1 or page.predictor == 1)
    )


class TiffRows:
    """Full-width rows of one page of an open :class:`tifffile.TiffFile`: ``(rows, W)`` or ``(rows, W, samples)``.

    ``segment_rows`` is the height of one tile or strip: reading bands that are
    a whole number of them decodes each tile once.
    """

    def __init__(self, tif: tifffile.TiffFile, page: tifffile.TiffPage, *, threads: int | None = None) -> None:
        if not rows_readable(page):
            raise ValueError("rows cannot be cut from this TIFF page (planes stored apart, a depth, or odd bits)")
        self.tif, self.page = tif, page
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.samples = int(page.samplesperpixel)
        self.direct = page.compression == 1 and not page.is_tiled
        if page.is_tiled:
            self.segment_rows, self.segment_cols = (int(v) for v in page.chunks[:2])  # (rows, cols[, samples])
        else:
            self.segment_rows, self.segment_cols = min(page.rowsperstrip or self.height, self.height), self.width
        self.threads = max(1, min(4, os.cpu_count() or 1)) if threads is None else threads

    def _shape(self, rows: int) -> tuple[int, ...]:
        return (rows, self.width) if self.samples == 1 else (rows, self.width, self.samples)

    def read(self, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0 .. y1 - 1`` (clipped to the image)."""
        y0, y1 = max(0, int(y0)), min(self.height, int(y1))
        if y1 <= y0:
            return np.zeros(self._shape(0), dtype=self.page.dtype)
        return self._direct(y0, y1) if self.direct else self._decoded(y0, y1)

    def _direct(self, y0: int, y1: int) -> np.ndarray:
        """Rows of an uncompressed striped page, read straight from the file (no strip is read whole)."""
        page = self.page
        dtype = page.dtype.newbyteorder(self.tif.byteorder)
        row_bytes = self.width * self.samples * dtype.itemsize
        per_strip = self.segment_rows
        band = np.empty(self._shape(y1 - y0), dtype=dtype)
        flat = band.reshape(y1 - y0, -1)
        fh = self.tif.filehandle
        y = y0
        while y < y1:
            strip, inside = divmod(y, per_strip)
            n = min(y1 - y, per_strip - inside)
            offset = page.dataoffsets[strip] + inside * row_bytes
            fh.seek(offset)
            data = fh.read(n * row_bytes)
            if len(data) != n * row_bytes:
                raise ValueError(f"failed to read {n * row_bytes} bytes at offset {offset}, got {len(data)}: "
                                 "the file is truncated")
            flat[y - y0 : y - y0 + n] = np.frombuffer(data, dtype=dtype).reshape(n, -1)
            y += n
        return band.astype(page.dtype, copy=False)

    def _decoded(self, y0: int, y1: int) -> np.ndarray:
        """Rows of a tiled or compressed page: the tiles or strips they cover, decoded in threads."""
        page, seg_h, seg_w = self.page, self.segment_rows, self.segment_cols
        across = math.ceil(self.width / seg_w)
        first, last = y0 // seg_h, math.ceil(y1 / seg_h)
        top = first * seg_h
        band = np.zeros(self._shape(min(self.height, last * seg_h) - top), dtype=page.dtype)
        index = [r * across + c for r in range(first, last) for c in range(across)]
        chunks = self.tif.filehandle.read_segments([page.dataoffsets[i] for i in index],
                                                   [page.databytecounts[i] for i in index], indices=index, sort=True)

        def place(chunk):
            segment, (_, _, y, x, _), _ = page.decode(*chunk, jpegtables=page.jpegtables)
            if segment is not None:  # None: an empty chunk, whose pixels stay 0
                h, w = min(segment.shape[1], top + band.shape[0] - y), min(segment.shape[2], self.width - x)
                piece = segment[0, :h, :w]
                band[y - top : y - top + h, x : x + w] = piece[..., 0] if self.samples == 1 else piece

        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                for _ in pool.map(place, chunks):
                    pass
        else:
            for chunk in chunks:
                place(chunk)
        return band[y0 - top : y1 - top]
