"""A gallery of trained models people can share (SegGal done properly), and bioimage.io export.

A gallery is a static folder (or the same folder served over http(s)):
``index.json`` and a browsable ``index.html``, and per model a deterministic
archive of its model directory with its sha256 and a model card (JSON,
Markdown, HTML) that never shows a score without the data and settings that
produced it. :func:`publish` adds a model, :func:`read_index` / :func:`search`
list them, :func:`pull` brings one into the cache, checked, for
``cellbench predict gallery:NAME``. :mod:`cellbench.gallery.bioimageio` writes
a bioimage.io model package (spec 0.5) of a Cellpose model directory.

The package sits above :mod:`cellbench.methods` and :mod:`cellbench.runner`
(it reads model directories and results databases) and below the CLI.
"""

from cellbench.gallery.archive import pack, unpack
from cellbench.gallery.card import check_card, model_card, standardised_time
from cellbench.gallery.index import SORT_KEYS, ordered
from cellbench.gallery.publish import publish
from cellbench.gallery.source import pull, read_index, search

__all__ = ["SORT_KEYS", "check_card", "model_card", "ordered", "pack", "publish", "pull", "read_index", "search",
           "standardised_time", "unpack"]
