"""Writing and checking files safely: all-or-nothing folders and files, checksums.

The lowest layer of cellbench after :mod:`cellbench.errors`: data, methods,
metrics, the runner, the report and the CLI all write their outputs through
:func:`staged_dir` (a folder) or :func:`atomic_write_bytes` (one file), so an
interrupted command never leaves a half-written output under its final name.
"""

from cellbench.files.atomic import atomic_write_bytes, staged_dir
from cellbench.files.digest import file_digest, file_digests

__all__ = ["atomic_write_bytes", "file_digest", "file_digests", "staged_dir"]
