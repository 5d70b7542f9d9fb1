"""Checksums of files, read once in blocks whatever their size (and of bytes already in memory)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

__all__ = ["bytes_digest", "chunks_digest", "file_digest", "file_digests"]

_BLOCK = 1 << 22


def file_digests(path: str | os.PathLike, algorithms: Sequence[str]) -> dict[str, str]:
    """Hex digests of one file for each of ``algorithms`` (``hashlib`` names), in a single read.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as fh:
    ...     _ = fh.write(b"abc"); fh.flush()
    ...     file_digests(fh.name, ("md5", "sha256"))["md5"]
    '900150983cd24fb0d6963f7d28e17f72'
    """
    if not algorithms:
        raise ValueError("no hash algorithm given")
    digests = [hashlib.new(name, usedforsecurity=False) for name in algorithms]
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            for digest in digests:
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in zip(algorithms, digests)}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of one file (sha256 unless another ``hashlib`` algorithm is named).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as fh:
    ...     _ = fh.write(b"abc"); fh.flush()
    ...     file_digest(fh.name)[:16]
    'ba7816bf8f01cfea'
    """
    return file_digests(path, (algorithm,))[algorithm]


def bytes_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Hex digest of bytes in memory (an archive built before it is written).

    >>> bytes_digest(b"abc", "md5")
    '900150983cd24fb0d6963f7d28e17f72'
    """
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


def chunks_digest(chunks: Iterable[bytes], algorithm: str = "sha256") -> str:
    """Hex digest of bytes made piece by piece (data in memory too large to join first).

    >>> chunks_digest([b"a", b"bc"], "md5") == bytes_digest(b"abc", "md5")
    True
    """
    digest = hashlib.new(algorithm, usedforsecurity=False)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()
