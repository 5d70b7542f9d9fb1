"""A protocol read whole: its experiment, its published values, and the check that they belong together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellbench.errors import DataError
from cellbench.protocols.locate import Protocol, find_protocol
from cellbench.protocols.published import PublishedSet, check_published, load_published

__all__ = ["LoadedProtocol", "load_protocol", "method_regimes"]


@dataclass(frozen=True)
class LoadedProtocol:
    """A protocol's files, its experiment (``cellbench.runner.Experiment``) and its checked published values."""

    protocol: Protocol
    experiment: Any
    published: PublishedSet | None


def method_regimes(path: str | Path) -> dict[str, tuple[str, ...] | None]:
    """Method label -> the regimes the experiment file gives it (None: all), read from the YAML itself, so that
    methods left out here (``if_installed``) are known too."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read the experiment file ({exc})", path=path) from exc
    methods = raw.get("methods") if isinstance(raw, dict) else None
    out: dict[str, tuple[str, ...] | None] = {}
    for label, spec in (methods or {}).items():
        regimes = spec.get("regimes") if isinstance(spec, dict) else None
        if regimes is not None and not isinstance(regimes, list):
            regimes = [regimes]
        out[str(label)] = None if regimes is None else tuple(map(str, regimes))
    return out


def load_protocol(name: str, *, search: str | Path | None = None) -> LoadedProtocol:
    """Find protocol ``name`` (:func:`~cellbench.protocols.locate.find_protocol`), load its experiment and its
    published values, and check that every value maps to one entry of the experiment and a metric it computes."""
    from cellbench.runner import load_experiment

    protocol = find_protocol(name, search)
    experiment = load_experiment(protocol.path)
    published = None
    if protocol.published is not None:
        published = load_published(protocol.published)
        check_published(published, experiment, method_regimes=method_regimes(protocol.path))
    return LoadedProtocol(protocol, experiment, published)
