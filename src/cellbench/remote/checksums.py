"""Checking a file against what its publisher says about it, or against the trust ledger."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cellbench.files import file_digests
from cellbench.remote.spec import RemoteFile
from cellbench.remote.trust import TrustLedger

__all__ = ["FileCheck", "check_file"]


@dataclass(frozen=True)
class FileCheck:
    """The outcome of checking one file.

    Attributes:
        path: the file checked.
        ok: its size and checksums agree with what is known (True also when nothing is known).
        basis: what it was checked against: ``published`` (the publisher's
            checksum), ``recorded`` (the sha256 recorded at its first
            download) or ``none`` (nothing known yet: not verified).
        sha256: the file's sha256 (None when it is missing or its size is wrong).
        problem: what is wrong, when not ``ok``.
    """

    path: Path
    ok: bool
    basis: Literal["published", "recorded", "none"]
    sha256: str | None = None
    problem: str | None = None


def check_file(path: str | os.PathLike, remote: RemoteFile, ledger: TrustLedger | None = None) -> FileCheck:
    """Check ``path`` against ``remote``'s published size and checksums, else the sha256 ``ledger`` recorded.

    The file is read once whatever the number of checksums.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as fh:
    ...     _ = fh.write(b"abc"); fh.flush()
    ...     check_file(fh.name, RemoteFile("abc", "https://example.org/abc", md5="0" * 32)).problem
    'checksum mismatch: md5 900150983cd24fb0d6963f7d28e17f72, expected 00000000000000000000000000000000'
    """
    path = Path(path)
    published = remote.checksums
    recorded = ledger.get(remote) if ledger is not None and not published else None
    basis = "published" if published else "recorded" if recorded else "none"
    if not path.is_file():
        return FileCheck(path, False, basis, problem="missing")
    size = path.stat().st_size
    origin = "" if not recorded else (f" (recorded at its first download, {recorded.get('recorded', 'date unknown')}, "
                                      f"in {ledger.path})")
    expected_size = remote.size if remote.size is not None else (recorded or {}).get("size")
    if expected_size is not None and size != expected_size:
        return FileCheck(path, False, basis, problem=f"size mismatch: {size} bytes, expected {expected_size}{origin}")
    if size == 0 and expected_size is None:  # no file cellbench fetches is empty: never trust an empty one
        return FileCheck(path, False, basis, problem="empty file, 0 bytes")
    got = file_digests(path, tuple(dict.fromkeys([*published, "sha256"])))
    for algo, want in published.items():
        if got[algo] != want:
            return FileCheck(path, False, basis, got["sha256"],
                             problem=f"checksum mismatch: {algo} {got[algo]}, expected {want}")
    prefix = remote.sha256_prefix
    if prefix is not None and not got["sha256"].startswith(prefix):
        return FileCheck(path, False, basis, got["sha256"],
                         problem=f"checksum mismatch: sha256 {got['sha256']} does not start with {prefix}, "
                                 "as the published file name says")
    if recorded and got["sha256"] != recorded["sha256"]:
        return FileCheck(path, False, basis, got["sha256"],
                         problem=f"checksum mismatch: sha256 {got['sha256']}, expected {recorded['sha256']}{origin}")
    return FileCheck(path, True, basis, got["sha256"])
