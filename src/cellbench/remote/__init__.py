"""Downloading files cellbench needs (datasets, pretrained weights, gallery models), verified.

One downloader for everything (:func:`fetch_file`): a file arrives as
``<name>.part``, resumes where a cut transfer stopped (HTTP ``Range``), is
checked against the publisher's md5 / sha256 and size, and takes its name
only when it matches. Where the publisher gives no checksum, the first copy
is trusted, its sha256 recorded and a warning printed (trust on first use,
:class:`TrustLedger`); later copies must match it. A mirror (a folder or an
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
from cellbench.remote.fetch import add_file, fetch_file, mirror_source, undo_new_folders
from cellbench.remote.spec import MIRROR_ENV, MODEL_MIRROR_ENV, RemoteFile, default_cache_dir, mirror_from_env
from cellbench.remote.transfer import Opener
from cellbench.remote.trust import TRUST_FILE, TrustLedger

__all__ = [
    "MIRROR_ENV", "MODEL_MIRROR_ENV", "TRUST_FILE", "FileCheck", "Opener", "RemoteFile", "TrustLedger", "add_file",
    "check_file", "check_zip", "default_cache_dir", "fetch_file", "mirror_from_env", "mirror_source", "undo_new_folders",
    "unpack_zip",
]
