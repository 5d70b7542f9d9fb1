"""Writing and checking files safely: all-or-nothing folders and files, one writer per folder, checksums.

The lowest layer of cellbench after :mod:`cellbench.errors`: data, methods,
metrics, the runner, the report and the CLI all write their outputs through
:func:`staged_dir` (a folder), :func:`atomic_write_bytes` (one file) or
:func:`atomic_writer` (one file written piece by piece), so an interrupted
command never leaves a half-written output under its final name;
:func:`folder_lock` keeps a second process from writing a folder another one
is writing.
"""

from cellbench.files.atomic import atomic_write_bytes, atomic_writer, check_output_dir, staged_dir
from cellbench.files.digest import bytes_digest, chunks_digest, file_digest, file_digests
from cellbench.files.lock import LOCK_FILE, folder_lock

__all__ = [
    "LOCK_FILE", "atomic_write_bytes", "atomic_writer", "bytes_digest", "check_output_dir", "chunks_digest", "file_digest", "file_digests", "folder_lock", "staged_dir",
]
