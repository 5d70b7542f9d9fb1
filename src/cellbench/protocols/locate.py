"""Where the seed papers' protocols are: ``examples/protocols/`` of a cellbench checkout, found by name.

A protocol is an experiment file ``NAME.yaml`` (``cellbench run`` reads it)
with its published numbers beside it in ``NAME.published.yaml``
(:mod:`cellbench.protocols.published`). There is one home for them,
``examples/protocols/`` in the repository; they are not package data, so an
installed cellbench finds them through:

1. a path given for NAME (``cellbench reproduce path/to/NAME.yaml``);
2. the folder ``$CELLBENCH_PROTOCOLS`` names, or one passed as ``search``;
3. ``examples/protocols/`` of the checkout this cellbench runs from (an
   editable install: ``pip install -e .``, as the Makefile does).

When none holds NAME the error says where it looked and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cellbench
from cellbench.errors import DataError

__all__ = ["PROTOCOLS_ENV", "PUBLISHED_SUFFIX", "Protocol", "find_protocol", "list_protocols", "protocol_folders"]

#: The environment variable naming a folder of protocols.
PROTOCOLS_ENV = "CELLBENCH_PROTOCOLS"
#: The published values of ``NAME.yaml`` are in ``NAME`` + this.
PUBLISHED_SUFFIX = ".published.yaml"


@dataclass(frozen=True)
class Protocol:
    """A protocol's name, its experiment file and its published-values file (None when it has none)."""

    name: str
    path: Path
    published: Path | None


def protocol_folders(search: str | Path | None = None) -> list[Path]:
    """The folders searched for protocols, in order: ``search``, ``$CELLBENCH_PROTOCOLS``, the checkout's."""
    folders = [Path(p).expanduser() for p in (search, os.environ.get(PROTOCOLS_ENV)) if p]
    checkout = Path(cellbench.__file__).resolve().parents[2] / "examples" / "protocols"  # src/cellbench/__init__.py
    return [*folders, checkout]


def _protocol(path: Path) -> Protocol:
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.stem
    published = path.with_name(name + PUBLISHED_SUFFIX)
    return Protocol(name, path, published if published.is_file() else None)


def list_protocols(search: str | Path | None = None) -> list[Protocol]:
    """Every protocol of the folders :func:`protocol_folders` names, by name; where two folders hold one name, the
    first folder's (the one :func:`find_protocol` finds)."""
    found: dict[str, Protocol] = {}
    for folder in protocol_folders(search):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
            if not path.name.endswith(PUBLISHED_SUFFIX):
                found.setdefault(_protocol(path).name, _protocol(path))
    return sorted(found.values(), key=lambda p: p.name)


def find_protocol(name: str, search: str | Path | None = None) -> Protocol:
    """The protocol ``name`` (a file stem such as ``glioma_c6``, or a path to an experiment file).

    >>> find_protocol("no_such_protocol", search="/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cellbench.errors.DataError: no protocol 'no_such_protocol' in /nonexistent...
    """
    given = Path(name).expanduser()
    if given.suffix in (".yaml", ".yml") or os.sep in name:
        if not given.is_file():
            raise DataError("no such protocol file", path=given)
        return _protocol(given)
    folders = protocol_folders(search)
    for folder in folders:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return _protocol(path)
    known = sorted({p.name for p in list_protocols(search)})
    raise DataError(
        f"no protocol {name!r} in {', '.join(map(str, folders))} (known here: {', '.join(known) or 'none'}). The "
        f"protocols live in examples/protocols/ of a cellbench checkout: run from an editable install "
        f"(pip install -e .), set ${PROTOCOLS_ENV} to that folder, or give the protocol's .yaml path")
