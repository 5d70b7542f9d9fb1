"""Moving the bytes of one file from a URL or a local copy into an open ``.part`` file, resuming when it can.

An http(s) transfer asks for the bytes after those already in the ``.part``
file (``Range: bytes=N-``) and appends them when the server answers 206
with that range; a server that answers 200 sends the whole file again, which
then replaces the partial one. A local copy (a mirror folder) resumes by
seeking. The caller says whether resuming is allowed at all (only when a
checksum can verify the joined file); when a transfer is cut, it keeps the
partial file only if the source can resume it (a 206 answer or
``Accept-Ranges: bytes``, or a local file).

A transfer never writes more than ``max_size`` bytes (the file's published
or recorded size): a ``Content-Length`` above it is refused before the body
is read, and a body that runs past it is cut off one byte after. A body
shorter than its ``Content-Length``, or a chunked body without its last
chunk, is a cut transfer. A body with neither (it ends when the connection
closes) cannot be told from a cut one; it is refused when nothing else
(checksum, size) can check it (``require_framing``).
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
    """A source could not deliver the file.

    ``resumable``: the partial bytes may be kept and resumed (a cut transfer
    from a source that resumes). ``refused``: the source sent what the file
    cannot be (more bytes than its size, or a body whose end cannot be
    checked): not a transport error, so not worth retrying from that source.
    """

    def __init__(self, reason: str, *, resumable: bool = False, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resumable = resumable and not refused
        self.refused = refused


@dataclass(frozen=True)
class Transferred:
    """What a transfer did: bytes already there that it kept (resumed from), bytes it wrote, and where the
    bytes came from (the URL after redirects, or the local path)."""

    resumed_from: int
    written: int
    source: str


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
    max_size: int | None = None,
    resume: bool = True,
    require_framing: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
    opener: Opener | None = None,
) -> Transferred:
    """Fill ``part`` (opened ``a+b``) with the file at ``source`` (a URL or a local path), after what it holds.

    Args:
        max_size: the file's size when known: never more bytes are written (see the module).
        resume: carry on after the bytes ``part`` holds; False empties it first.
        require_framing: refuse a body whose end cannot be told from a cut connection.

    Raises :class:`TransferFailed` with the reason; ``part`` then holds what arrived.
    """
    if not resume or (max_size is not None and part.seek(0, os.SEEK_END) > max_size):
        part.truncate(0)
    if is_url(source):
        return _from_url(source, part, desc=desc, max_size=max_size, require_framing=require_framing,
                         timeout=timeout, progress=progress, opener=opener or _urlopen)
    return _from_path(Path(source), part, desc=desc, max_size=max_size, progress=progress)


def _too_big(what: str, size: int, max_size: int) -> TransferFailed:
    return TransferFailed(f"{what.format(f'{size:,} bytes')}, more than the {max_size:,} the file has; refused "
                          "before downloading", refused=True)


def _copy(src: IO[bytes], part: IO[bytes], *, start: int, total: int | None, max_size: int | None, desc: str,
          progress: bool) -> int:
    """Append ``src`` to ``part``; refused one byte after ``max_size`` in all (``start`` bytes already there).

    ``total`` sizes the progress bar.
    """
    from tqdm import tqdm

    written = 0
    read = getattr(src, "read1", src.read)  # read1: whatever has arrived, so a stalled transfer keeps it
    with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
              disable=not progress) as bar:
        while True:
            room = None if max_size is None else max_size - start - written
            block = read(_BLOCK if room is None else max(1, min(_BLOCK, room + 1)))
            if not block:
                break
            if room is not None and len(block) > room:
                part.flush()
                raise TransferFailed(f"sent more than the {max_size:,} bytes the file has; stopped there, "
                                     "refused", refused=True)
            part.write(block)
            written += len(block)
            bar.update(len(block))
    part.flush()
    return written


def _from_path(path: Path, part: IO[bytes], *, desc: str, max_size: int | None, progress: bool) -> Transferred:
    try:
        with open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            if max_size is not None and size > max_size:
                raise _too_big("is {}", size, max_size)
            start = part.seek(0, os.SEEK_END)
            if start > size:
                part.truncate(0)
                start = 0
            src.seek(start)
            written = _copy(src, part, start=start, total=size, max_size=max_size, desc=desc, progress=progress)
    except FileNotFoundError as exc:
        raise TransferFailed("no such file") from exc
    except IsADirectoryError as exc:
        raise TransferFailed("is a folder, not a file") from exc
    except OSError as exc:
        raise TransferFailed(f"cannot copy ({exc.strerror or exc})", resumable=True) from exc
    return Transferred(start, written, str(path))


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


def _from_url(url: str, part: IO[bytes], *, desc: str, max_size: int | None, require_framing: bool, timeout: float,
              progress: bool, opener: Opener) -> Transferred:
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
        if max_size is not None and length is not None and start + length > max_size:
            raise _too_big("the server announces {} (Content-Length)", start + length, max_size)
        framed = length is not None or bool(getattr(response, "chunked", False))
        if require_framing and not framed and url.lower().startswith(("http://", "https://")):
            raise TransferFailed("the server gives no Content-Length and no chunked body, so a cut transfer "
                                 "cannot be told from a whole one, and no checksum or size can check it; refused "
                                 "(download it by hand and add it, or use a mirror)", refused=True)
        source = getattr(response, "url", None) or url  # after redirects
        try:
            written = _copy(response, part, start=start, total=start + length if length is not None else max_size,
                            max_size=max_size, desc=desc, progress=progress)
        except TimeoutError as exc:
            raise TransferFailed(f"interrupted: no data for {timeout:g} s (timed out) after "
                                 f"{_size(part)} bytes", resumable=resumable) from exc
        except (OSError, http.client.HTTPException) as exc:  # a dropped connection, IncompleteRead
            reason = str(exc) or type(exc).__name__
            raise TransferFailed(f"interrupted after {_size(part)} bytes ({reason})", resumable=resumable) from exc
    if length is not None and written < length:
        raise TransferFailed(f"interrupted after {_size(part)} of {start + length} bytes", resumable=resumable)
    return Transferred(start, written, source)


def _size(part: IO[bytes]) -> int:
    part.flush()
    return os.fstat(part.fileno()).st_size
