"""Keep freed heap memory in the process: SAM on a CPU runs 2x faster with it.

SAM's decoder allocates and frees tens of megabytes per prompt batch. glibc
serves blocks that large with ``mmap`` and returns them to the OS on
``free``, so every batch page-faults its memory back in: on 2 cores about
half of the decoding time was kernel time (64 prompts at 128 px input,
5 batches: 12.4 s as is, 6.4 s with this). Raising glibc's mmap and trim
thresholds keeps freed blocks for reuse; the cost is that the process keeps
its peak heap size until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["keep_freed_memory"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory (mmap threshold 1 GiB, no trimming); once per process.

    Returns whether it took effect (False off Linux / glibc, e.g. macOS, musl).
    """
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                )
            except (OSError, AttributeError):  # no glibc: nothing to tune
                _done = False
        log.debug("glibc keeps freed memory: %s", _done)
    return _done
