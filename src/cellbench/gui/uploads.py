"""Uploaded images and masks: size-limited, plain names, and only kept when they decode as images.

Two limits guard the server. ``max_bytes`` caps the file as sent; ``max_decoded_bytes`` caps the
pixels it decodes to, read from the header before any pixel is decoded: a well-compressed TIFF of a
few megabytes can decode to gigabytes (12,288² float64 pixels are 1.2 GB). The default,
:data:`MAX_DECODED_BYTES` (2^28 bytes, 256 MiB), holds a 16,384² 8-bit image, an 11,585² 16-bit one
or an 8,192² 8-bit RGBA one, and keeps the decoded image with its display copies well within a
workstation's memory. The decoding runs in a worker thread
(:func:`store_upload`), so the server keeps answering other pages meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
from pathlib import Path

import numpy as np

from cellbench.data.images import IMAGE_SUFFIXES, read_image, read_label_image
from cellbench.errors import DataError
from cellbench.gui.workspace import Workspace, safe_name

__all__ = ["MAX_DECODED_BYTES", "UPLOADS", "decoded_size", "save_upload", "store_upload"]

UPLOADS = "uploads"
MAX_DECODED_BYTES = 2**28


def decoded_size(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype an image file decodes to (as :func:`cellbench.data.images.read_image` reads it), from
    its header alone.

    A palette image counts as RGBA: the reader converts palettes to colours.
    """
    import tifffile
    from PIL import Image

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return tuple(int(d) for d in series.shape), np.dtype(series.dtype)
    except tifffile.TiffFileError:
        pass
    with Image.open(path) as im:
        bands = 4 if im.mode in ("P", "PA") else len(im.getbands())
        dtype = {"I": np.int32, "F": np.float32}.get(im.mode, np.uint16 if im.mode.startswith("I;16") else np.uint8)
        return (im.size[1], im.size[0], *((bands,) if bands > 1 else ())), np.dtype(dtype)


def _check_decoded_size(path: Path, filename: str, max_decoded_bytes: int) -> None:
    try:
        shape, dtype = decoded_size(path)
    except Exception as exc:  # any header the decoders cannot read
        raise DataError(f"upload does not decode as an image ({type(exc).__name__}: {exc})", path=filename) from None
    size = math.prod(shape) * dtype.itemsize
    if size > max_decoded_bytes:
        dims = " x ".join(map(str, shape))
        raise DataError(f"upload decodes to {dims} {dtype} pixels = {size:,} bytes, more than the GUI's limit of "
                        f"{max_decoded_bytes:,} bytes (cellbench gui --max-image-mb)", path=filename)


def save_upload(workspace: Workspace, set_name: str, kind: str, filename: str, data: bytes, *,
                max_bytes: int, max_decoded_bytes: int = MAX_DECODED_BYTES) -> Path:
    """Store ``data`` as ``uploads/<set_name>/<kind>/<filename>`` once it decodes (``kind``: images or masks).

    Refused with a :class:`DataError` naming the file: more than ``max_bytes``, a header that says the pixels
    take more than ``max_decoded_bytes`` (checked before decoding), a name with a folder part or odd
    characters, a suffix that is not an image's, or content that does not decode as an image (masks: as a
    label image). Blocking (it decodes the image): call it through :func:`store_upload` on the event loop.
    """
    if kind not in ("images", "masks"):
        raise DataError(f"upload kind must be images or masks, got {kind!r}")
    if len(data) > max_bytes:
        raise DataError(f"upload of {len(data):,} bytes is over the limit of {max_bytes:,} bytes", path=filename)
    if Path(filename).name != filename or "\\" in filename:
        raise DataError("upload names may not hold folders", path=filename)
    safe_name(filename, "file name")
    if Path(filename).suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"not an image file name; accepted: {', '.join(IMAGE_SUFFIXES)}", path=filename)
    workspace.folder(UPLOADS)
    folder = workspace.resolve(f"{UPLOADS}/{safe_name(set_name, 'upload set name')}/{kind}")  # no link out
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / f".upload-{secrets.token_hex(6)}{Path(filename).suffix.lower()}"
    try:
        staged.write_bytes(data)
        _check_decoded_size(staged, filename, max_decoded_bytes)
        try:
            (read_label_image if kind == "masks" else read_image)(staged)
        except DataError as exc:
            raise DataError(f"upload does not decode as an image ({exc.problem})", path=filename) from None
        target = folder / filename
        os.replace(staged, target)
        return target
    finally:
        staged.unlink(missing_ok=True)


async def store_upload(workspace: Workspace, set_name: str, kind: str, filename: str, data: bytes, *,
                       max_bytes: int, max_decoded_bytes: int = MAX_DECODED_BYTES) -> Path:
    """:func:`save_upload` in a worker thread: decoding a large image must not stall the server's event loop."""
    return await asyncio.to_thread(save_upload, workspace, set_name, kind, filename, data, max_bytes=max_bytes,
                                   max_decoded_bytes=max_decoded_bytes)
