"""Picking the one annotation file of a split among several (COCO json, TissueNet npz)."""

from __future__ import annotations

import re
from pathlib import Path

from cellbench.data.confine import confine
from cellbench.errors import DataError

__all__ = ["pick_split_file", "split_token"]


def split_token(stem: str, split: str) -> bool:
    """Is ``split`` a whole word (``_ - .`` separated) of a file stem? ``val`` is not in ``interval``.

    >>> split_token("livecell_coco_val", "val"), split_token("coco_interval", "val")
    (True, False)
    >>> split_token("tissuenet_v1.1_test", "test")
    True
    """
    return split.lower() in re.split(r"[_\-. ]+", stem.lower())


def pick_split_file(path: Path, patterns: tuple[str, ...], split: str | None, what: str, *,
                    confine_to: Path | None = None) -> Path:
    """``path`` itself when it is a file, else the one file under it matching the first pattern that
    finds any and naming ``split``; otherwise a :class:`DataError` listing what was found.

    With ``confine_to``, ``path``, each folder a pattern lists and the file picked must lie inside it
    (:func:`~cellbench.data.confine.confine`)."""
    if confine(path, confine_to, "dataset path").is_file():
        return path
    if not path.is_dir():
        raise DataError("no such file or folder", path=path)
    found: list[Path] = []
    for pattern in patterns:
        folder = confine((path / pattern).parent, confine_to, "folder")  # wildcards only in the last part
        found = sorted(folder.glob(Path(pattern).name))
        if found:
            break
    if split is not None:
        found = [p for p in found if split_token(p.stem, split)]
    if len(found) != 1:
        listing = ", ".join(p.name for p in found) or "none"
        hint = " (pass --split to choose)" if len(found) > 1 else ""
        raise DataError(f"expected one {what}{' for split ' + split if split else ''}, found: {listing}{hint}", path=path)
    return confine(found[0], confine_to, what)
