"""What the results database holds, as frozen records: the one type for each stored row.

The runner writes them (:func:`~cellbench.runner.entry.run_entry` returns
:class:`EvaluationRecord` values, :class:`~cellbench.runner.store.ResultStore`
stores them) and reads them back (:meth:`~cellbench.runner.store.ResultStore.entries`,
``evaluations``, ``trainings``, ``invocations``, ``runs``); the report reads
nothing else. "Entry" is a grid entry (one dataset x task x method x regime x
seed); "cell" in cellbench always means a biological cell.

>>> ev = EvaluationRecord(split="test", ground_truth="overlap", flatten_policy=None, boundary_px=0,
...                       thresholds=(0.5,), n_images=2, predict_wall_s=1.5, result={})
>>> ev.setting()
'split test, overlapping ground truth, boundary rule: off'
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EntryRecord", "EvaluationRecord", "InvocationRecord", "RunRecord", "TrainingRecord"]


@dataclass(frozen=True)
class EvaluationRecord:
    """Scores of one grid entry on one test split against one kind of ground truth."""

    split: str | None
    ground_truth: str  # "overlap" | "flattened"
    flatten_policy: str | None  # the policy that flattened the ground truth, None for overlap
    boundary_px: int  # the boundary rule's frame width (0: off)
    thresholds: tuple[float, ...]  # the IoU thresholds scored
    n_images: int
    predict_wall_s: float | None
    result: dict = field(repr=False)  # cellbench.metrics evaluate(...).to_dict()

    def setting(self) -> str:
        """Split, ground truth and boundary rule in words, for captions."""
        gt = ("overlapping ground truth" if self.ground_truth == "overlap"
              else f"ground truth flattened ({self.flatten_policy})")
        boundary = (f"boundary rule: instances within {self.boundary_px} px of the border dropped"
                    if self.boundary_px else "boundary rule: off")
        return f"split {self.split or 'all'}, {gt}, {boundary}"


@dataclass(frozen=True)
class TrainingRecord:
    """How a grid entry's model was trained: wall time, the images used, the method's history."""

    wall_s: float | None
    n_images: int | None
    images: tuple[str, ...]
    history: dict | None
    resumed_from_cache: bool


@dataclass(frozen=True)
class EntryRecord:
    """One grid entry as stored: what ran (its full config), whether it worked, its training."""

    key: str
    label: str
    dataset: str
    task: str
    method: str  # the method's label in the experiment
    method_impl: str  # the implementation it names (a METHODS name or package.module:Class)
    regime: str
    train_images: int | None
    seed: int
    status: str  # "done" | "failed"
    error: str | None
    config: dict = field(repr=False)
    invocation_id: int | None = None
    host: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    training: TrainingRecord | None = None  # None for an entry that did not train

    @property
    def layout(self) -> str:
        """The dataset's layout name (``glioma-c6``, ``dsb``, ...), from the entry's config."""
        return (self.config.get("dataset") or {}).get("layout", "")

    @property
    def model(self) -> str:
        """The entry's model in words, as reports name it: method label and regime (and seed when not 0)."""
        return f"{self.method} ({self.regime}{'' if self.seed == 0 else f', seed {self.seed}'})"


@dataclass(frozen=True)
class InvocationRecord:
    """One ``cellbench run`` (or resume) of a run folder: when, how, where."""

    invocation_id: int
    started_at: str
    finished_at: str | None
    resumed: bool
    status: str  # "running" (never finished: killed) | "finished" | "interrupted"
    executor: dict
    environment: dict


@dataclass(frozen=True)
class RunRecord:
    """A run: its experiment as run and the fingerprint a resume must match."""

    run_id: int
    name: str
    fingerprint: str
    experiment: dict = field(repr=False)
    experiment_path: str | None
    created_at: str
