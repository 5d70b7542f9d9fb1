"""Downloading files cellbench needs (datasets, pretrained weights, gallery models), verified.

One downloader for everything (:func:`fetch_file`): a file arrives as
``<name>.part``, resumes where a cut transfer stopped (HTTP ``Range``, only
when a checksum can verify the joined file), never grows past its published
or recorded size, is checked against the publisher's md5 / sha256 and size,
and takes its name only when it matches. Where the publisher gives no
checksum, the first whole copy is trusted once it has proved usable
(:func:`fetching`), its sha256 and the URL it came from recorded and a
warning printed (trust on first use, :class:`TrustLedger`); later copies
must match it. Archives unpack through a staged folder, capped in size and
number of entries (:class:`UnpackLimits`). A mirror (a folder or an
http(s) URL holding the same files under their published names) is tried
first, for machines behind a firewall: ``$CELLBENCH_MIRROR`` for everything,
``$CELLBENCH_MODEL_MIRROR`` for model files (:func:`mirror_from_env`).

Why plain ``urllib`` rather than pooch or requests: it is in the standard
library (no dependency for a core feature), it honours the usual proxy
variables (``https_proxy``, ``no_proxy``) that firewalled sites rely on,
verifies TLS certificates by default, reads ``file://`` URLs the same way,
and a resumable download is a ``Range`` header and a 206 check, a few lines
that are easier to test against a local server than a library's retry
policy. pooch would add a dependency and its own cache layout for no gain here.

>>> from cellbench.remote import RemoteFile, fetch_file
>>> RemoteFile("cyto3", "https://www.cellpose.org/models/cyto3").checksums
{}
"""

from cellbench.remote.archive import check_zip, unpack_zip
from cellbench.remote.checksums import FileCheck, check_file
from cellbench.remote.fetch import Fetched, add_file, adding, fetch_file, fetching, mirror_source, undo_new_folders
from cellbench.remote.spec import MIRROR_ENV, MODEL_MIRROR_ENV, RemoteFile, default_cache_dir, mirror_from_env
from cellbench.remote.transfer import Opener
from cellbench.remote.trust import TRUST_FILE, FirstUse, TrustLedger
from cellbench.remote.unpack_limits import DEFAULT_LIMITS, MODEL_LIMITS, UnpackBudget, UnpackLimits, parse_size

__all__ = [
    "DEFAULT_LIMITS", "MIRROR_ENV", "MODEL_LIMITS", "MODEL_MIRROR_ENV", "TRUST_FILE", "Fetched", "FileCheck",
    "FirstUse", "Opener", "RemoteFile", "TrustLedger", "UnpackBudget", "UnpackLimits", "add_file", "adding",
    "check_file", "check_zip", "default_cache_dir", "fetch_file", "fetching", "mirror_from_env", "mirror_source",
    "parse_size", "undo_new_folders", "unpack_zip",
]
