"""The ``--max-unpacked-size`` and ``--max-unpacked-files`` options of the commands that unpack downloads.

The caps themselves live in :mod:`cellbench.remote.unpack_limits`; it is
imported when an option is used, not when the parser is built (building it
must not import the downloader).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cellbench.remote.unpack_limits import UnpackLimits

__all__ = ["DEFAULT_TEXT", "add_unpack_options", "unpack_limits"]

#: The default caps in words, as the help prints them (a test holds them equal to the library's).
DEFAULT_TEXT = {"data": ("32 GiB", "100,000"), "model": ("16 GiB", "10,000")}


def _size(text: str) -> int:
    from cellbench.remote.unpack_limits import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of entries >= 1, got {text!r}")
    return value


def add_unpack_options(p: argparse.ArgumentParser, kind: Literal["data", "model"]) -> None:
    """Add the two options; ``kind`` picks the defaults the help names (datasets or gallery models)."""
    size, files = DEFAULT_TEXT[kind]
    p.add_argument("--max-unpacked-size", type=_size, metavar="SIZE",
                   help=f"refuse an archive that unpacks to more than SIZE in all, counted as it unpacks "
                        f"(e.g. 500M, 64G; default {size}); a guard against archive bombs: raise it only for an "
                        "archive you trust")
    p.add_argument("--max-unpacked-files", type=_count, metavar="N",
                   help=f"refuse an archive of more than N files and folders (default {files})")


def unpack_limits(args: argparse.Namespace, kind: Literal["data", "model"]) -> UnpackLimits:
    """The caps the options give, the library's defaults for ``kind`` where an option is not used."""
    from cellbench.remote.unpack_limits import DEFAULT_LIMITS, MODEL_LIMITS, UnpackLimits

    default = DEFAULT_LIMITS if kind == "data" else MODEL_LIMITS
    return UnpackLimits(max_bytes=args.max_unpacked_size or default.max_bytes,
                        max_entries=args.max_unpacked_files or default.max_entries)
