"""One verified download: from a mirror or the publisher into a cache folder, checked before it is kept.

:func:`fetch_file` is the only code in cellbench that downloads: datasets
(:mod:`cellbench.data.download`), pretrained weights
(:mod:`cellbench.pretrained`) and gallery models all come through it. A
file arrives as ``<file_name>.part`` (locked while it is written, so two
processes never write it at once), is checked, and is renamed to its name
only when it matches; a file that does not match is removed, and that source
is not asked again (only a cut transfer is worth another try). A cut transfer
leaves the ``.part`` file when the source can resume it and a checksum
(published, or recorded at the first download) can verify the joined file;
the next call carries on from there. Without one, a download always starts
from the first byte, so a file is never two responses joined unchecked.
Never more bytes are written than the file's published or recorded size.

Trust on first use is recorded only once the file has proved usable:
:func:`fetching` and :func:`adding` hold the record back until the ``with``
block (which unpacks or loads the file) succeeds, and remove an unverified
file the block could not use, so a bad first copy never becomes
the reference later copies are refused against. The record names the URL
the bytes came from, after redirects.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cellbench.errors import DataError
from cellbench.remote.checksums import FileCheck, check_file
from cellbench.remote.spec import MIRROR_ENV, RemoteFile, mirror_from_env
from cellbench.remote.transfer import Opener, TransferFailed, is_url, transfer
from cellbench.remote.trust import NO_CHECKSUM, TRUST_FILE, FirstUse, TrustLedger

__all__ = ["Fetched", "add_file", "adding", "fetch_file", "fetching", "mirror_source", "undo_new_folders"]

log = logging.getLogger(__name__)


def mirror_source(mirror: str, file_name: str) -> str:
    """Where ``mirror`` (a folder or an http(s)/file URL) holds ``file_name``.

    >>> mirror_source("https://mirror.example.org/models/", "cyto3")
    'https://mirror.example.org/models/cyto3'
    >>> mirror_source("/srv/models", "cyto3")
    '/srv/models/cyto3'
    """
    if is_url(mirror):
        return mirror.rstrip("/") + "/" + urllib.parse.quote(file_name)
    return str(Path(mirror).expanduser() / file_name)


def fetch_file(
    remote: RemoteFile,
    dest_dir: str | os.PathLike,
    *,
    mirror: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    trust_ledger: str | os.PathLike | None = None,
    opener: Opener | None = None,
    unverified_reason: str = NO_CHECKSUM,
) -> Path:
    """``dest_dir/<file_name>``, downloaded and checked unless a good copy is already there.

    A file with nothing to check it against is trusted on first use as soon as
    it is whole; to record it only after it is unpacked or loaded, use :func:`fetching`.

    Args:
        remote: the file, with its published checksums (md5 and/or sha256) and size.
        dest_dir: the cache folder it goes to.
        mirror: a folder or http(s) URL holding the same file under ``file_name``,
            tried before ``remote.url``; None takes ``$CELLBENCH_MIRROR`` (``""``: no mirror).
        timeout: seconds to wait for a connection or for the next bytes.
        progress: show a tqdm progress bar.
        trust_ledger: the JSON file recording the sha256 of files whose
            publisher gives no checksum (default ``dest_dir/trusted-sha256.json``):
            the first download is recorded there with a warning that it was not
            verified, later ones are checked against it.
        opener: opens a ``urllib.request.Request`` with a timeout (default
            ``urllib.request.urlopen``), for callers with their own transport.
        unverified_reason: why nothing verifies the file, for the
            trust-on-first-use warning (default: the publisher gives no checksum).

    Raises:
        DataError: naming the URL (and the mirror) when no source gives a
            matching file: no network, a 404, a timeout, a checksum mismatch,
            more bytes than the file's size.
    """
    with fetching(remote, dest_dir, mirror=mirror, timeout=timeout, progress=progress, trust_ledger=trust_ledger,
                  opener=opener, unverified_reason=unverified_reason) as path:
        return path


class Fetched(contextlib.AbstractContextManager):
    """A checked file in the cache; ``first_use`` is set when nothing verified it (see :class:`FirstUse`).

    As a context manager it gives the path, and when the ``with`` block (which
    unpacks or loads the file) succeeds, records the trust on first use; when
    the block fails, an unverified file is removed and nothing is recorded, so
    the next download starts afresh. A verified file stays either way, and so
    does an unverified one, unrecorded, when the block is interrupted
    (Ctrl-C): nothing showed it is bad.
    """

    def __init__(self, path: Path, first_use: FirstUse | None) -> None:
        self.path = path
        self.first_use = first_use

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.first_use is None:
            return
        if exc_type is None:
            self.first_use.record()
            return
        if not issubclass(exc_type, Exception):
            return
        self.path.unlink(missing_ok=True)
        log.warning("%s: removed: it was not verified and could not be used", self.path)


def fetching(
    remote: RemoteFile,
    dest_dir: str | os.PathLike,
    *,
    mirror: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    trust_ledger: str | os.PathLike | None = None,
    opener: Opener | None = None,
    unverified_reason: str = NO_CHECKSUM,
) -> Fetched:
    """Download and check as :func:`fetch_file` does, now; trust on first use waits for the ``with`` block.

    A file fetched but never used in a ``with`` block stays in the cache unrecorded.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = Path(d, "w.bin").write_bytes(b"weights")
    ...     remote = RemoteFile("w.bin", "https://example.org/w.bin")
    ...     try:
    ...         with fetching(remote, Path(d, "cache"), mirror=d, progress=False) as path:
    ...             raise ValueError("cannot load it")
    ...     except ValueError:
    ...         pass
    ...     path.exists(), Path(d, "cache", TRUST_FILE).exists()
    (False, False)
    """
    mirror = mirror_from_env("data") if mirror is None else mirror or None
    sources = ([mirror_source(mirror, remote.file_name)] if mirror else []) + [remote.url]
    return _fetch(remote, Path(dest_dir), sources, timeout=timeout, progress=progress,
                  ledger=_ledger(dest_dir, trust_ledger), opener=opener, mirror=mirror, reason=unverified_reason)


def add_file(
    path: str | os.PathLike,
    remote: RemoteFile,
    dest_dir: str | os.PathLike,
    *,
    trust_ledger: str | os.PathLike | None = None,
    progress: bool = False,
) -> Path:
    """Copy a file fetched by hand into ``dest_dir`` as ``remote``, after the same checks as a download.

    A published checksum or a recorded sha256 must match; with neither, its
    sha256 is recorded (trust on first use) and a warning says it was not
    verified. To record it only after it is unpacked, use :func:`adding`.
    """
    with adding(path, remote, dest_dir, trust_ledger=trust_ledger, progress=progress) as added:
        return added


def adding(
    path: str | os.PathLike,
    remote: RemoteFile,
    dest_dir: str | os.PathLike,
    *,
    trust_ledger: str | os.PathLike | None = None,
    progress: bool = False,
) -> Fetched:
    """Copy and check as :func:`add_file` does, now; trust on first use waits for the ``with`` block (see
    :class:`Fetched`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    with undo_new_folders(dest_dir):  # a refused file leaves the cache as it was
        return _fetch(remote, Path(dest_dir), [str(path)], timeout=0.0, progress=progress,
                      ledger=_ledger(dest_dir, trust_ledger), opener=None, mirror=None, replace=True,
                      reason=NO_CHECKSUM)


def _ledger(dest_dir: str | os.PathLike, trust_ledger: str | os.PathLike | None) -> TrustLedger:
    return TrustLedger(trust_ledger if trust_ledger is not None else Path(dest_dir) / TRUST_FILE)


@contextlib.contextmanager
def _locked_part(part: Path) -> Iterator[IO[bytes]]:
    """``part`` opened for appending, under an exclusive lock (refused when another process holds it)."""
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        fh = open(part, "a+b")  # noqa: SIM115 - closed below, after the lock's work is done
    except OSError as exc:
        raise DataError(f"cannot write the download ({exc.strerror or exc})", path=part) from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError("another process is downloading this file now; wait for it to finish",
                            path=part) from None
        yield fh
    finally:
        fh.close()


@contextlib.contextmanager
def undo_new_folders(folder: str | os.PathLike) -> Iterator[None]:
    """Run the block; when it fails, remove the folders on the way to ``folder`` that it created and left empty.

    A refused download or copy then leaves the cache as it was (a resumable
    ``.part`` file keeps its folder).
    """
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        yield
    except BaseException:
        for p in missing:
            try:
                if p.exists():
                    p.rmdir()  # refused when not empty: what is inside was not made by this block alone
            except OSError:
                break
        raise


@dataclass(frozen=True)
class _Arrived:
    """A source delivered a file that checks out (``size`` bytes), from ``source`` (after redirects)."""

    check: FileCheck
    size: int
    source: str


def _first_use(remote: RemoteFile, arrived: _Arrived, ledger: TrustLedger, reason: str) -> FirstUse | None:
    if arrived.check.basis != "none":
        return None
    return FirstUse(remote, arrived.check.sha256, arrived.size, arrived.source, ledger, reason)


def _fetch(remote: RemoteFile, dest_dir: Path, sources: list[str], *, timeout: float, progress: bool,
           ledger: TrustLedger, opener: Opener | None, mirror: str | None, reason: str,
           replace: bool = False) -> Fetched:
    """The checked file in ``dest_dir``, with what to record for it when nothing verified it."""
    target = dest_dir / remote.file_name
    if target.is_file() and not replace:
        check = check_file(target, remote, ledger)
        if check.ok:  # a copy nothing verified yet (its first use failed, or never came): its origin is the cache
            arrived = _Arrived(check, target.stat().st_size, str(target))
            return Fetched(target, _first_use(remote, arrived, ledger, reason))
        log.warning("%s: %s; fetching it again", target, check.problem)
        target.unlink()
    part = dest_dir / f"{remote.file_name}.part"
    failures: list[str] = []
    keep_part = False
    with _locked_part(part) as fh:
        try:
            for i, source in enumerate(sources):
                failed = _try_source(remote, source, fh, part, target, ledger, failures, timeout=timeout,
                                     progress=progress, opener=opener, replace=replace)
                if isinstance(failed, _Arrived):
                    keep_part = True  # renamed into place: the name may already be another writer's new part
                    return Fetched(target, _first_use(remote, failed, ledger, reason))
                keep_part = (keep_part or failed) and part.stat().st_size > 0
                if mirror and i == 0:
                    log.warning("%s: not usable from the mirror (%s); trying %s", remote.file_name, failures[-1],
                                remote.url)
        finally:
            if not keep_part:
                part.unlink(missing_ok=True)
    if replace:  # add_file: the user's own copy
        raise DataError(f"not a good copy of {remote.file_name} ({failures[0][len(sources[0]) + 2:]})",
                        path=sources[0])
    raise _failure(remote, failures, mirror=mirror)


def _try_source(remote: RemoteFile, source: str, fh: IO[bytes], part: Path, target: Path, ledger: TrustLedger,
                failures: list[str], *, timeout: float, progress: bool, opener: Opener | None,
                replace: bool) -> _Arrived | bool:
    """Fill ``part`` from ``source`` and move it to ``target`` if it checks out (returns :class:`_Arrived`).

    Otherwise the reason is appended to ``failures`` and the return value says
    whether the bytes left in ``part`` may be resumed. A file that arrived
    whole and does not match is not downloaded again: the source sent it.
    """
    recorded = ledger.get(remote) if not remote.checksums else None
    size = remote.size if remote.size is not None else (recorded or {}).get("size")
    verifiable = bool(remote.checksums) or recorded is not None  # only then can a resumed file be checked
    for attempt in (1, 2):
        try:
            done = transfer(source, fh, desc=remote.file_name, max_size=size, resume=verifiable,
                            require_framing=not verifiable and size is None, timeout=timeout, progress=progress,
                            opener=opener)
        except TransferFailed as exc:
            if exc.refused:
                fh.truncate(0)
            failures.append(f"{source}: {exc.reason}" + ("; removed the bad copy" if exc.refused and not replace
                                                          else ""))
            return exc.resumable and verifiable
        check = check_file(part, remote, ledger)
        if check.ok:
            arrived = _Arrived(check, part.stat().st_size, done.source)
            if replace and target.is_file():
                target.unlink()
            os.replace(part, target)
            return arrived
        fh.truncate(0)
        if done.resumed_from and attempt == 1:  # the kept bytes, not the source, may be what is wrong
            log.warning("%s: %s after resuming a partial download; downloading it whole",
                        remote.file_name, check.problem)
            continue
        failures.append(f"{source}: {check.problem}" + ("" if replace else "; removed the bad copy"))
        return False
    return False


def _failure(remote: RemoteFile, failures: list[str], *, mirror: str | None) -> DataError:
    tried = "; ".join(failures)
    if mirror:
        hint = f"the mirror {mirror} (the mirror option or ${MIRROR_ENV}) was tried first"
    else:
        hint = (f"offline or behind a firewall, set ${MIRROR_ENV} (or the mirror option) to a folder or "
                f"http(s) URL holding {remote.file_name}")
    return DataError(f"cannot download {remote.file_name}: {tried}; {hint}", path=remote.url)
