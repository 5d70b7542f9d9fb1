"""The registry of pretrained weights, fetched by name into the cache, checked.

Signatures (other modules call these; keep them stable)::

    resolve_pretrained(name_or_path: str | os.PathLike, *, method: str | None = None,
                       cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path
        # an existing file/folder as given; else a registry name (short names such as "cyto3",
        # "2D_versatile_fluo", "vit_b" work when unambiguous) pulled into $CELLBENCH_CACHE/models
        # when not cached. Returns the entry's first file (Cellpose: the network file, the size
        # model beside it; SAM: the .pth), or for a zipped model folder (StarDist) the unpacked
        # folder holding config.json. Raises DataError (unknown name, download failure naming
        # the URL and $CELLBENCH_MODEL_MIRROR / `cellbench models add`).
    get_pretrained(name: str, *, method: str | None = None) -> PretrainedModel
    find_pretrained(name: str, *, method: str | None = None) -> PretrainedModel | None
    list_pretrained(method: str | None = None) -> list[PretrainedModel]
    pull_pretrained(name, *, cache_dir=None, mirror=None, progress=True, timeout=60.0) -> Path
    cached_paths(name, cache_dir=None) -> list[Path] | None
    verify_pretrained(name=None, cache_dir=None) -> list[tuple[PretrainedModel, FileCheck]]
    add_pretrained(name, files, cache_dir=None) -> list[Path]

Each :class:`PretrainedModel` says which method it belongs to, its files
(URL, size, checksum), licence, citation, what it was trained on
(:class:`TrainingData`: modality, nuclei / whole cell, channels) and whether
its publisher gives a checksum (``checksum_published``; when not, the first
download is trusted, recorded and warned about, and later ones are checked
against it). The entries are in :mod:`cellbench.pretrained.entries`.

>>> get_pretrained("cellpose/cyto3").files[0].url
'https://www.cellpose.org/models/cyto3'
"""

from cellbench.pretrained.cache import (
    add_pretrained,
    cached_paths,
    model_folder,
    models_dir,
    pull_pretrained,
    resolve_pretrained,
    verify_pretrained,
)
from cellbench.pretrained.registry import (
    PretrainedModel,
    TrainingData,
    find_pretrained,
    get_pretrained,
    list_pretrained,
)

__all__ = [
    "PretrainedModel", "TrainingData", "add_pretrained", "cached_paths", "find_pretrained", "get_pretrained",
    "list_pretrained", "model_folder", "models_dir", "pull_pretrained", "resolve_pretrained", "verify_pretrained",
]
