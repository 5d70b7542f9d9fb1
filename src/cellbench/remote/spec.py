"""What a downloadable file is, where downloads are kept, and which mirror to use.

A :class:`RemoteFile` is a published file: its name, where the publisher
serves it, and what the publisher says about it (size, md5, sha256). Callers
(the dataset downloader, the pretrained-model registry) describe their files
with it and hand it to :func:`~cellbench.remote.fetch.fetch_file`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["MIRROR_ENV", "MODEL_MIRROR_ENV", "RemoteFile", "default_cache_dir", "mirror_from_env"]

#: A folder or http(s) URL holding copies of every file cellbench downloads, under their published names.
MIRROR_ENV = "CELLBENCH_MIRROR"
#: The same for pretrained model files only; it wins over :data:`MIRROR_ENV` for them.
MODEL_MIRROR_ENV = "CELLBENCH_MODEL_MIRROR"

_HEX_LENGTHS = {"md5": 32, "sha256": 64}


@dataclass(frozen=True)
class RemoteFile:
    """A published file: saved as ``file_name``, served at ``url``, checked against what is published.

    ``md5`` and ``sha256`` are the publisher's checksums (hex, either or
    both); with neither, the first download is trusted and its sha256
    recorded (see :mod:`cellbench.remote.trust`). ``size`` (bytes), when
    known, is checked too and sizes the progress bar. ``sha256_prefix`` is
    the leading hex digits of the sha256 that some publishers put in the
    file name (torchvision's ``-73cbd019.pth``): checked always, but too
    short to stand for the whole checksum, so the full one is still recorded
    on first use.

    >>> RemoteFile("a.bin", "https://example.org/a.bin", md5="0" * 32).checksums
    {'md5': '00000000000000000000000000000000'}
    """

    file_name: str
    url: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None

    def __post_init__(self) -> None:
        if not self.file_name or "/" in self.file_name or "\\" in self.file_name or self.file_name in {".", ".."}:
            raise ValueError(f"file_name must be a plain file name, got {self.file_name!r}")
        for algo, length in _HEX_LENGTHS.items():
            value = getattr(self, algo)
            if value is not None and (len(value) != length or value.strip("0123456789abcdef")):
                raise ValueError(f"{algo} of {self.file_name} must be {length} lower-case hex digits, got {value!r}")
        prefix = self.sha256_prefix
        if prefix is not None and (not 8 <= len(prefix) <= 64 or prefix.strip("0123456789abcdef")):
            raise ValueError(f"sha256_prefix of {self.file_name} must be 8 to 64 lower-case hex digits, got {prefix!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"size of {self.file_name} must be >= 0, got {self.size}")

    @property
    def checksums(self) -> dict[str, str]:
        """The published checksums, ``{algorithm: hex}`` (empty when none is published)."""
        return {algo: getattr(self, algo) for algo in _HEX_LENGTHS if getattr(self, algo) is not None}


def default_cache_dir() -> Path:
    """``$CELLBENCH_CACHE``, else ``$XDG_CACHE_HOME/cellbench``, else ``~/.cache/cellbench``."""
    if os.environ.get("CELLBENCH_CACHE"):
        return Path(os.environ["CELLBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cellbench"


def mirror_from_env(kind: Literal["data", "model"] = "data") -> str | None:
    """The mirror the environment names for ``kind`` of file, or None.

    ``$CELLBENCH_MODEL_MIRROR`` wins for model files; ``$CELLBENCH_MIRROR``
    serves everything.
    """
    names = (MODEL_MIRROR_ENV, MIRROR_ENV) if kind == "model" else (MIRROR_ENV,)
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None
