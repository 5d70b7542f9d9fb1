"""Moving the bytes of one file from a URL or a local copy into an open ``.part`` file, resuming when it can.

An http(s) transfer asks for the bytes after those already in the ``.part``
file (``Range: bytes=N-``) and appends them when the server answers 206
with that range; a server that answers 200 sends the whole file again, which
then replaces the partial one. A local copy (a mirror folder) resumes by
seeking. When a transfer is cut, the caller keeps the partial file only if
the source can resume it (a 206 answer or ``Accept-Ranges: bytes``, or a
local file); otherwise it is removed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cellbench import __version__

if TYPE_CHECKING:
    import urllib.request

# http.client and urllib.request (~60 ms of imports) are imported by the functions that open URLs:
# every `cellbench` command imports this package through the dataset table, and most never download.

__all__ = ["Opener", "TransferFailed", "is_url", "transfer"]

#: Opens a ``urllib.request.Request`` with a timeout in seconds and returns the response.
Opener = Callable[["urllib.request.Request", float], Any]

_BLOCK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class TransferFailed(Exception):
    """A source could not deliver the file; ``resumable`` says whether the partial bytes may be kept."""

    def __init__(self, reason: str, *, resumable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resumable = resumable


@dataclass(frozen=True)
class Transferred:
    """What a transfer did: bytes already there that it kept (resumed from), and bytes it wrote."""

    resumed_from: int
    written: int


def is_url(source: str) -> bool:
    """True for ``scheme://...`` sources, False for a local path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


def _urlopen(request: urllib.request.Request, timeout: float) -> Any:
    import urllib.request

    return urllib.request.urlopen(request, timeout=timeout)


def transfer(
    source: str,
    part: IO[bytes],
    *,
    desc: str,
    size_hint: int | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    opener: Opener | None = None,
) -> Transferred:
    """Fill ``part`` (opened ``a+b``) with the file at ``source`` (a URL or a local path), after what it holds.

    Raises :class:`TransferFailed` with the reason; ``part`` then holds what arrived.
    """
    if is_url(source):
        return _from_url(source, part, desc=desc, size_hint=size_hint, timeout=timeout, progress=progress,
                         opener=opener or _urlopen)
    return _from_path(Path(source), part, desc=desc, progress=progress)


def _copy(src: IO[bytes], part: IO[bytes], *, start: int, total: int | None, desc: str, progress: bool) -> int:
    from tqdm import tqdm

    written = 0
    read = getattr(src, "read1", src.read)  # read1: whatever has arrived, so a stalled transfer keeps it
    with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
              disable=not progress) as bar:
        for block in iter(lambda: read(_BLOCK), b""):
            part.write(block)
            written += len(block)
            bar.update(len(block))
    part.flush()
    return written


def _from_path(path: Path, part: IO[bytes], *, desc: str, progress: bool) -> Transferred:
    try:
        with open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            start = part.seek(0, os.SEEK_END)
            if start > size:
                part.truncate(0)
                start = 0
            src.seek(start)
            written = _copy(src, part, start=start, total=size, desc=desc, progress=progress)
    except FileNotFoundError as exc:
        raise TransferFailed("no such file") from exc
    except IsADirectoryError as exc:
        raise TransferFailed("is a folder, not a file") from exc
    except OSError as exc:
        raise TransferFailed(f"cannot copy ({exc.strerror or exc})", resumable=True) from exc
    return Transferred(start, written)


def _open(url: str, start: int, timeout: float, opener: Opener) -> Any:
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": f"cellbench/{__version__}"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return opener(request, timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise TransferFailed(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise TransferFailed(f"cannot connect ({exc.reason})") from exc
    except TimeoutError as exc:
        raise TransferFailed(f"no answer within {timeout:g} s (timed out)") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise TransferFailed(f"cannot connect ({type(exc).__name__}: {exc})") from exc


def _from_url(url: str, part: IO[bytes], *, desc: str, size_hint: int | None, timeout: float, progress: bool,
              opener: Opener) -> Transferred:
    import http.client

    start = part.seek(0, os.SEEK_END)
    try:
        response = _open(url, start, timeout, opener)
    except TransferFailed as exc:
        if not start or "HTTP 416" not in exc.reason:
            raise
        start = 0  # the partial file is no prefix of the file served now: start again
        part.truncate(0)
        response = _open(url, 0, timeout, opener)
    with response:
        status = getattr(response, "status", None)
        headers = getattr(response, "headers", None) or {}
        length = getattr(response, "length", None)
        resumable = status == 206 or str(headers.get("Accept-Ranges", "")).lower() == "bytes"
        if start and status == 206:
            found = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
            if found is None or int(found.group(1)) != start:
                raise TransferFailed(f"asked for bytes {start}- and got {headers.get('Content-Range')!r}")
        elif start:  # the whole file again (200, or a scheme without ranges)
            start = 0
            part.truncate(0)
        total = start + length if length is not None else size_hint
        try:
            written = _copy(response, part, start=start, total=total, desc=desc, progress=progress)
        except TimeoutError as exc:
            raise TransferFailed(f"interrupted: no data for {timeout:g} s (timed out) after "
                                 f"{_size(part)} bytes", resumable=resumable) from exc
        except (OSError, http.client.HTTPException) as exc:  # a dropped connection, IncompleteRead
            reason = str(exc) or type(exc).__name__
            raise TransferFailed(f"interrupted after {_size(part)} bytes ({reason})", resumable=resumable) from exc
    if length is not None and written < length:
        raise TransferFailed(f"interrupted after {_size(part)} of {total} bytes", resumable=resumable)
    return Transferred(start, written)


def _size(part: IO[bytes]) -> int:
    part.flush()
    return os.fstat(part.fileno()).st_size
