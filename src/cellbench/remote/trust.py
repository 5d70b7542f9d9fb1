"""Trust on first use, for files whose publisher gives no checksum.

Cellpose, for one, publishes no checksum for its model files. The first
time such a file is downloaded, its sha256 is recorded in a ledger (a small
JSON file in the cache) with a warning that it was not verified; every
later download, copy or check of the same file is compared with that
record, so a file that changes on the server, in a mirror or in the cache
is caught from then on. The ledger is keyed by the file's published URL,
so a copy from a mirror and one from the publisher are the same entry; each
record names where its bytes came from (the URL after redirects, the mirror,
or the file added by hand).

Only a whole copy that has proved usable is recorded: a transfer whose end
cannot be checked is refused, a partial download is never resumed without a
checksum, and callers record a :class:`FirstUse` only after the file has
unpacked or loaded (:func:`cellbench.remote.fetching`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.remote.spec import RemoteFile

__all__ = ["NO_CHECKSUM", "TRUST_FILE", "FirstUse", "TrustLedger"]

log = logging.getLogger(__name__)

#: The ledger's default file name, in the folder files are downloaded to.
TRUST_FILE = "trusted-sha256.json"
#: Why a file is not verified, when its caller gives no other reason.
NO_CHECKSUM = "its publisher gives no checksum"


class TrustLedger:
    """The sha256 recorded for each unpublished-checksum file at its first download.

    Reads are cheap; :meth:`record` rewrites the file atomically under a lock,
    so concurrent downloads of different files do not lose each other's records.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ledger = TrustLedger(Path(d) / "trust.json")
    ...     remote = RemoteFile("w.bin", "https://example.org/w.bin")
    ...     ledger.record(remote, "ab" * 32, size=3, source="https://example.org/w.bin")["sha256"][:4]
    ...     ledger.get(remote)["size"]
    'abab'
    3
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise DataError(f"cannot read the trust-on-first-use ledger ({exc.strerror or exc})",
                            path=self.path) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"trust-on-first-use ledger is not JSON ({exc}); fix or remove it", path=self.path) from exc
        if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
            raise DataError("trust-on-first-use ledger has no 'files' mapping; fix or remove it", path=self.path)
        return data.get("files", {})

    def get(self, remote: RemoteFile) -> dict | None:
        """The record of ``remote`` (``sha256``, ``size``, ``file_name``, ``source``, ``recorded``), or None."""
        entry = self._read().get(remote.url)
        if entry is not None and not isinstance(entry.get("sha256"), str):
            raise DataError(f"trust-on-first-use ledger entry for {remote.url} has no sha256", path=self.path)
        return entry

    def record(self, remote: RemoteFile, sha256: str, *, size: int, source: str) -> dict:
        """Record ``sha256`` as the trusted checksum of ``remote`` (refused if another is recorded)."""
        entry = {"file_name": remote.file_name, "sha256": sha256, "size": size, "source": source,
                 "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with self._locked():
            files = self._read()
            old = files.get(remote.url)
            if old is not None and old.get("sha256") != sha256:
                raise DataError(f"{remote.file_name} already has sha256 {old.get('sha256')} recorded, not {sha256}",
                                path=self.path)
            files[remote.url] = entry
            payload = {"about": "sha256 of files whose publisher gives no checksum, recorded at their first "
                                "download (trust on first use); later downloads are checked against it",
                       "files": dict(sorted(files.items()))}
            atomic_write_bytes(self.path, (json.dumps(payload, indent=2) + "\n").encode())
        return entry

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the ledger's folder (no lock file left behind) while the block runs."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise DataError(f"cannot lock the trust-on-first-use ledger ({exc.strerror or exc})", path=folder) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a rename: waiting is brief
            yield
        finally:
            os.close(fd)


@dataclass(frozen=True)
class FirstUse:
    """A whole file nothing verified (no published checksum, none recorded), to be trusted on first use.

    :meth:`record` adds it to ``ledger`` with a warning that says ``reason``;
    callers do so only once the file has proved usable.
    """

    remote: RemoteFile
    sha256: str
    size: int
    source: str
    ledger: TrustLedger
    reason: str = NO_CHECKSUM

    def record(self) -> dict:
        entry = self.ledger.record(self.remote, self.sha256, size=self.size, source=self.source)
        log.warning("%s: not verified: %s; trusting this first copy (from %s) and recording its sha256 %s in %s, "
                    "against which later copies are checked", self.remote.file_name, self.reason, self.source,
                    self.sha256, self.ledger.path)
        return entry
