"""What a protocol needs before it runs: its datasets and pretrained weights by name, fetched and checked.

Both go through cellbench's one verified downloader (:mod:`cellbench.remote`:
checksums, resume, ``$CELLBENCH_MIRROR``): datasets with
:func:`cellbench.data.registered.download_registered` (``cellbench data
download``), weights with :func:`cellbench.pretrained.pull_pretrained`
(``cellbench models pull``). Fetching everything first means a missing file
stops the run at once, with the publisher's instructions, not hours into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cellbench.errors import DataError
from cellbench.protocols.budget import WEIGHT_KEYS

__all__ = ["Requirements", "fetch_requirements", "protocol_requirements"]


@dataclass(frozen=True)
class Requirements:
    """The registered datasets and the pretrained weights (method label, registry name) an experiment uses."""

    datasets: tuple[str, ...]
    weights: tuple[tuple[str, str], ...]


def protocol_requirements(experiment: Any) -> Requirements:
    """The datasets an experiment reads by name (``registered:``) and the registry weights its methods start from.

    Weights are the values of :data:`~cellbench.protocols.budget.WEIGHT_KEYS` in a method's config (and its
    per-dataset settings) that name an entry of :mod:`cellbench.pretrained` usable by the method; a file path
    is the user's and is left alone.
    """
    from cellbench.pretrained import find_pretrained

    datasets = tuple(dict.fromkeys(d.registered for d in experiment.datasets if d.registered))
    weights: dict[tuple[str, str], None] = {}
    for spec in experiment.methods:
        for config in (spec.config, *spec.per_dataset.values()):
            for key in WEIGHT_KEYS:
                value = config.get(key)
                entry = find_pretrained(value, method=spec.method) if isinstance(value, str) else None
                if entry is not None:
                    weights[(spec.name, entry.name)] = None
    return Requirements(datasets=datasets, weights=tuple(weights))


def fetch_requirements(requirements: Requirements, *, progress: bool = True,
                       say: Callable[[str], None] | None = None) -> None:
    """Download (or find in the cache, checked) every dataset and weight file; one :class:`DataError` listing
    everything that could not be fetched, after trying all of them. ``say`` gets one line per item."""
    from cellbench.data.registered import download_registered
    from cellbench.pretrained import pull_pretrained

    users: dict[str, list[str]] = {}
    for label, name in requirements.weights:
        users.setdefault(name, []).append(label)
    items = [(f"dataset {name}", download_registered, name) for name in requirements.datasets]
    items += [(f"weights {name} (methods {', '.join(labels)})", pull_pretrained, name)
              for name, labels in users.items()]
    problems = []
    for what, fetch, name in items:
        try:
            path = fetch(name, progress=progress)
        except DataError as exc:
            problems.append(f"{what}: {exc}")
            continue
        if say:
            say(f"{what}: {path}")
    if problems:
        raise DataError("the protocol's data or weights are not all here; nothing was run:\n  "
                        + "\n  ".join(problems))
