"""Caps on what unpacking an archive may write: total bytes and number of entries, counted as it is written.

A small archive can unpack into a huge one (a zip or tar.gz "bomb": 1 MB of
zeros compresses to about 1 KB), and an archive can hold millions of empty
entries. Every archive cellbench unpacks (dataset zips, zipped pretrained
models, gallery model ``.tar.gz``) goes through an :class:`UnpackBudget`,
which counts the entries and the bytes actually written, not the sizes the
archive's headers declare, and refuses the archive the moment either passes
its :class:`UnpackLimits`. Callers unpack into a staged folder, so a refused
archive leaves nothing behind.

The defaults sit well above what the files cellbench knows need:

* datasets (:data:`DEFAULT_LIMITS`): 32 GiB and 100,000 entries. The largest
  registered dataset, TissueNet v1.1, unpacks to about 15 GB of ``.npz``
  (float32 images and int32 labels); Glioma C6, NeurIPS-22 and LIVECell zips
  unpack to a few GB; LIVECell's images.zip, the most entries, holds about
  5,000 files.
* gallery models (:data:`MODEL_LIMITS`): 16 GiB and 10,000 entries. A model
  directory is a few files; the largest weights cellbench trains or pulls
  (SAM ViT-H fine-tunes, nnU-Net's folds) are a few GB.

Raise them with ``limits=UnpackLimits(max_bytes=..., max_entries=...)`` or,
on the command line, ``--max-unpacked-size`` and ``--max-unpacked-files``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cellbench.errors import DataError

__all__ = ["DEFAULT_LIMITS", "MODEL_LIMITS", "UnpackBudget", "UnpackLimits", "format_size", "parse_size"]

_GIB = 1 << 30
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_BLOCK = 1 << 20
_HOW_TO_RAISE = ("raise the cap with --max-unpacked-size / --max-unpacked-files, or "
                 "limits=UnpackLimits(max_bytes=..., max_entries=...), if you trust this archive")


@dataclass(frozen=True)
class UnpackLimits:
    """The most an archive may unpack to: ``max_bytes`` in all and ``max_entries`` files and folders.

    >>> UnpackLimits(max_bytes=parse_size("1M")).max_bytes
    1048576
    """

    max_bytes: int = 32 * _GIB
    max_entries: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_entries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


#: Dataset archives and zipped pretrained models.
DEFAULT_LIMITS = UnpackLimits()
#: Gallery model archives.
MODEL_LIMITS = UnpackLimits(max_bytes=16 * _GIB, max_entries=10_000)


def parse_size(text: str) -> int:
    """Bytes from ``text``: a whole number with an optional binary unit (``K``, ``M``, ``G``, ``T``; ``iB`` or ``B``).

    >>> parse_size("64G"), parse_size("1.5 MiB"), parse_size("4096")
    (68719476736, 1572864, 4096)
    """
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), flags=re.IGNORECASE)
    if found is None:
        raise ValueError(f"expected a size such as 500M, 20G or 1048576 (bytes), got {text!r}")
    value = int(float(found.group(1)) * _UNITS[found.group(2).upper()])
    if value < 1:
        raise ValueError(f"a size must be at least 1 byte, got {text!r}")
    return value


def format_size(n: int) -> str:
    """``n`` bytes in words, with the unit :func:`parse_size` reads back.

    >>> format_size(32 << 30), format_size(1536), format_size(10)
    ('32 GiB', '1.5 KiB', '10 bytes')
    """
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} bytes"


class UnpackBudget:
    """Counts what unpacking ``archive`` writes and refuses it (a :class:`DataError` naming it) past ``limits``.

    >>> import io
    >>> budget = UnpackBudget(UnpackLimits(max_bytes=4), "a.zip")
    >>> budget.copy(io.BytesIO(b"abc"), io.BytesIO(), "x")
    3
    >>> try:
    ...     budget.copy(io.BytesIO(b"de"), io.BytesIO(), "y")
    ... except DataError as exc:
    ...     print(exc.problem.split(";")[0])
    unpacks to more than the cap of 4 bytes (at entry 'y')
    """

    def __init__(self, limits: UnpackLimits, archive: str | Path) -> None:
        self.limits = limits
        self.archive = archive
        self.entries = 0
        self.written = 0

    def refuse_bytes(self, name: str, declared: bool = False) -> DataError:
        what = "declares that it unpacks" if declared else "unpacks"
        return DataError(f"{what} to more than the cap of {format_size(self.limits.max_bytes)} (at entry "
                         f"{name!r}); refused, nothing unpacked kept; {_HOW_TO_RAISE}", path=self.archive)

    def entry(self, name: str) -> None:
        """Count one more entry (file or folder) before it is written."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise DataError(f"holds more than the cap of {self.limits.max_entries:,} entries (at {name!r}); "
                            f"refused, nothing unpacked kept; {_HOW_TO_RAISE}", path=self.archive)

    def copy(self, source: IO[bytes], out: IO[bytes], name: str) -> int:
        """Copy ``source`` to ``out``, counting the bytes; refused as soon as the total passes the cap.

        Reads at most one byte past the cap, whatever the entry's header says its size is.
        """
        copied = 0
        while True:
            room = self.limits.max_bytes - self.written
            block = source.read(min(_BLOCK, room + 1))
            if not block:
                return copied
            if len(block) > room:
                raise self.refuse_bytes(name)
            out.write(block)
            copied += len(block)
            self.written += len(block)
