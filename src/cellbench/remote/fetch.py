"""One verified download: from a mirror or the publisher into a cache folder, checked before it is kept.

:func:`fetch_file` is the only code in cellbench that downloads: datasets
(:mod:`cellbench.data.download`), pretrained weights
(:mod:`cellbench.pretrained`) and gallery models all come through it. A
file arrives as ``<file_name>.part`` (locked while it is written, so two
processes never write it at once), is checked, and is renamed to its name
only when it matches; a file that does not match is removed. A cut transfer
leaves the ``.part`` file when the source can resume it, and the next call
carries on from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cellbench.errors import DataError
from cellbench.remote.checksums import FileCheck, check_file
from cellbench.remote.spec import MIRROR_ENV, RemoteFile, mirror_from_env
from cellbench.remote.transfer import Opener, TransferFailed, is_url, transfer
from cellbench.remote.trust import TRUST_FILE, TrustLedger

__all__ = ["add_file", "fetch_file", "mirror_source", "undo_new_folders"]

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
) -> Path:
    """``dest_dir/<file_name>``, downloaded and checked unless a good copy is already there.

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

    Raises:
        DataError: naming the URL (and the mirror) when no source gives a
            matching file: no network, a 404, a timeout, a checksum mismatch.
    """
    mirror = mirror_from_env("data") if mirror is None else mirror or None
    sources = ([mirror_source(mirror, remote.file_name)] if mirror else []) + [remote.url]
    return _fetch(remote, Path(dest_dir), sources, timeout=timeout, progress=progress,
                  ledger=_ledger(dest_dir, trust_ledger), opener=opener, mirror=mirror)


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
    sha256 is recorded (trust on first use) and a warning says it was not verified.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    with undo_new_folders(dest_dir):  # a refused file leaves the cache as it was
        return _fetch(remote, Path(dest_dir), [str(path)], timeout=0.0, progress=progress,
                      ledger=_ledger(dest_dir, trust_ledger), opener=None, mirror=None, replace=True)


def _ledger(dest_dir: str | os.PathLike, trust_ledger: str | os.PathLike | None) -> TrustLedger:
    return TrustLedger(trust_ledger if trust_ledger is not None else Path(dest_dir) / TRUST_FILE)


def _trust(remote: RemoteFile, check: FileCheck, ledger: TrustLedger, source: str) -> None:
    ledger.record(remote, check.sha256, size=check.path.stat().st_size, source=source)
    log.warning("%s: not verified: its publisher gives no checksum; trusting this first copy (from %s) and "
                "recording its sha256 %s in %s, against which later copies are checked",
                remote.file_name, source, check.sha256, ledger.path)


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


def _fetch(remote: RemoteFile, dest_dir: Path, sources: list[str], *, timeout: float, progress: bool,
           ledger: TrustLedger, opener: Opener | None, mirror: str | None, replace: bool = False) -> Path:
    target = dest_dir / remote.file_name
    if target.is_file() and not replace:
        check = check_file(target, remote, ledger)
        if check.ok:
            if check.basis == "none":
                _trust(remote, check, ledger, str(target))
            return target
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
                if failed is None:
                    keep_part = True  # renamed into place: the name may already be another writer's new part
                    return target
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
                replace: bool) -> bool | None:
    """Fill ``part`` from ``source`` and move it to ``target`` if it checks out (returns None).

    Otherwise the reason is appended to ``failures`` and the return value says
    whether the bytes left in ``part`` may be resumed.
    """
    for attempt in (1, 2):
        try:
            done = transfer(source, fh, desc=remote.file_name, size_hint=remote.size, timeout=timeout,
                            progress=progress, opener=opener)
        except TransferFailed as exc:
            failures.append(f"{source}: {exc.reason}")
            return exc.resumable
        check = check_file(part, remote, ledger)
        if check.ok:
            if check.basis == "none":
                _trust(remote, check, ledger, source)
            if replace and target.is_file():
                target.unlink()
            os.replace(part, target)
            return None
        fh.truncate(0)
        if done.resumed_from and attempt == 1:  # a stale partial file: once more from the start
            log.warning("%s: %s after resuming a partial download; downloading it whole",
                        remote.file_name, check.problem)
            continue
        failures.append(f"{source}: {check.problem}" + ("" if replace else "; removed the bad copy"))
    return False


def _failure(remote: RemoteFile, failures: list[str], *, mirror: str | None) -> DataError:
    tried = "; ".join(failures)
    if mirror:
        hint = f"the mirror {mirror} (the mirror option or ${MIRROR_ENV}) was tried first"
    else:
        hint = (f"offline or behind a firewall, set ${MIRROR_ENV} (or the mirror option) to a folder or "
                f"http(s) URL holding {remote.file_name}")
    return DataError(f"cannot download {remote.file_name}: {tried}; {hint}", path=remote.url)
