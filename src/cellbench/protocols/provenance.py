"""Which protocol a run folder came from, under which budget, and the published values to compare it with.

``cellbench reproduce`` writes ``RUN/protocol.json``: the protocol's name and
files, the budget and every change it made (:class:`~cellbench.protocols.budget.BudgetChange`),
and the published values themselves, so the run's report needs no checkout.
A run made with ``cellbench run examples/protocols/NAME.yaml`` has no such
file; :func:`run_published` then reads the ``NAME.published.yaml`` beside the
experiment file the run recorded, if it is still there (budget ``paper``, or
unknown changes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.protocols.budget import BudgetChange
from cellbench.protocols.locate import PUBLISHED_SUFFIX
from cellbench.protocols.published import PublishedSet, load_published

__all__ = ["PROVENANCE_FILE", "RunProvenance", "read_provenance", "run_published", "write_provenance"]

#: The file in a run folder saying which protocol and budget made it.
PROVENANCE_FILE = "protocol.json"


@dataclass(frozen=True)
class RunProvenance:
    """A run's protocol, budget and published values (``budget`` None: not known, the run was not reproduced)."""

    protocol: str
    experiment_file: str | None
    budget: str | None
    changes: tuple[BudgetChange, ...]
    published: PublishedSet | None

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "experiment_file": self.experiment_file, "budget": self.budget,
                "changes": [c.to_dict() for c in self.changes],
                "published": None if self.published is None else self.published.to_dict()}


def write_provenance(run_dir: str | Path, provenance: RunProvenance) -> Path:
    """Write ``run_dir/protocol.json`` (atomically); a different protocol or budget already there is refused."""
    path = Path(run_dir) / PROVENANCE_FILE
    old = read_provenance(run_dir)
    if old is not None and (old.protocol, old.budget) != (provenance.protocol, provenance.budget):
        raise DataError(f"this run was made from protocol {old.protocol} with budget {old.budget}, not "
                        f"{provenance.protocol} with budget {provenance.budget}; use another --out", path=path)
    atomic_write_bytes(path, (json.dumps(provenance.to_dict(), indent=1) + "\n").encode())
    return path


def read_provenance(run_dir: str | Path) -> RunProvenance | None:
    """The run's ``protocol.json``, or None when it has none."""
    path = Path(run_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        return RunProvenance(
            protocol=d["protocol"], experiment_file=d.get("experiment_file"), budget=d.get("budget"),
            changes=tuple(BudgetChange(**c) for c in d.get("changes", ())),
            published=None if d.get("published") is None else PublishedSet.from_dict(d["published"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the run's protocol record ({exc})", path=path) from exc


def run_published(run_dir: str | Path, experiment_path: str | None) -> RunProvenance | None:
    """What the run is compared with: its ``protocol.json``, else the published values beside ``experiment_path``
    (the experiment file the run was started from); None when there are none."""
    recorded = read_provenance(run_dir)
    if recorded is not None:
        return recorded
    if not experiment_path:
        return None
    experiment = Path(experiment_path)
    stem = experiment.name[: -len(experiment.suffix)] if experiment.suffix else experiment.name
    beside = experiment.with_name(stem + PUBLISHED_SUFFIX)
    if not beside.is_file():
        return None
    return RunProvenance(protocol=stem, experiment_file=str(experiment), budget=None, changes=(),
                         published=load_published(beside))

