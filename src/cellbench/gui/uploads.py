"""Uploaded images and masks: size-limited, plain names, and only kept when they decode as images."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cellbench.data.images import IMAGE_SUFFIXES, read_image, read_label_image
from cellbench.errors import DataError
from cellbench.gui.workspace import Workspace, safe_name

__all__ = ["UPLOADS", "save_upload"]

UPLOADS = "uploads"


def save_upload(workspace: Workspace, set_name: str, kind: str, filename: str, data: bytes, *,
                max_bytes: int) -> Path:
    """Store ``data`` as ``uploads/<set_name>/<kind>/<filename>`` once it decodes (``kind``: images or masks).

    Refused with a :class:`DataError`: more than ``max_bytes``, a name with a folder part or odd characters,
    a suffix that is not an image's, or content that does not decode as an image (masks: as a label image).
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
        try:
            (read_label_image if kind == "masks" else read_image)(staged)
        except DataError as exc:
            raise DataError(f"upload does not decode as an image ({exc.problem})", path=filename) from None
        target = folder / filename
        os.replace(staged, target)
        return target
    finally:
        staged.unlink(missing_ok=True)
