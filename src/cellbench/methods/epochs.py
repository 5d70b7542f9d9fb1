"""A training loop's epoch bookkeeping: when it validates, which epoch is best, the history its checkpoint saves.

Every loop cellbench owns that keeps its best epoch does the same at each epoch
end: it validates on schedule (:func:`validation_due`), keeps a copy of the
weights when the score is the best so far, appends the epoch's row to the
history and saves its :class:`~cellbench.methods.checkpoint.EpochCheckpoint`
with the history and the best epoch; after the last epoch it puts the best
weights back. :class:`EpochHistory` holds that state, so a loop reads::

    history = EpochHistory.resume(checkpoint)        # the saved rows and best epoch, if any
    for epoch in checkpoint.epochs(n, progress):
        ...                                          # the loop's own steps
        val = None
        if validate is not None and validation_due(epoch, n, every):
            val = validate()
            history.score(epoch, val, model.state_dict())
        history.add(epoch, EpochRecord(epoch=epoch, loss=loss, val_score=val))
    kept = history.restore_best(model.load_state_dict)  # the best epoch, or None: the last weights stay
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar

from cellbench.methods.base import EpochRecord
from cellbench.methods.checkpoint import EpochCheckpoint

__all__ = ["EpochHistory", "validation_due"]

Row = TypeVar("Row")


def validation_due(epoch: int, epochs: int, every: int | None) -> bool:
    """Whether a loop of ``epochs`` epochs validates after ``epoch`` (counted from 0): after every
    ``every``-th epoch and after the last (``every`` 0 or None: the last only).

    >>> [validation_due(e, 5, 2) for e in range(5)], [validation_due(e, 3, 0) for e in range(3)]
    ([False, True, False, True, True], [False, False, True])
    """
    return epoch == epochs - 1 or bool(every and (epoch + 1) % every == 0)


class EpochHistory(Generic[Row]):
    """The rows of the finished epochs and the best-scoring epoch with a copy of its weights.

    Args:
        checkpoint: the loop's checkpoint; :meth:`add` saves it after every epoch.
        rows: the rows so far (dataclasses; :meth:`resume` rebuilds them from the checkpoint).
        best: (score, epoch, weights) of the best epoch so far, or None.
        better: ``"higher"`` (an F1) or ``"lower"`` (a validation loss) scores are better.
        floor: a first score must be better than this to be kept (None: any score is).
    """

    def __init__(self, checkpoint: EpochCheckpoint, rows: list[Row] | None = None,
                 best: tuple[float, int, dict] | None = None, *, better: Literal["higher", "lower"] = "higher",
                 floor: float | None = None) -> None:
        if better not in ("higher", "lower"):
            raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
        self.checkpoint = checkpoint
        self.rows: list[Row] = list(rows or [])
        self.best = best
        self.better = better
        self.floor = floor

    @classmethod
    def resume(cls, checkpoint: EpochCheckpoint, *, row: Callable[..., Row] = EpochRecord,
               better: Literal["higher", "lower"] = "higher", floor: float | None = None) -> EpochHistory[Row]:
        """Resume ``checkpoint`` (its objects and random states: :meth:`EpochCheckpoint.resume`) and take the
        history and best epoch it saved, each saved row rebuilt as ``row(**values)``."""
        resumed = checkpoint.resume()
        return cls(checkpoint, [row(**values) for values in resumed.history], resumed.best, better=better,
                   floor=floor)

    def _beats(self, score: float, other: float) -> bool:
        return score > other if self.better == "higher" else score < other

    def score(self, epoch: int, score: float, weights: Mapping[str, Any]) -> bool:
        """Note ``epoch``'s validation score; when it beats the best so far (the floor, at first), keep a deep
        copy of ``weights`` as the best. True when it does."""
        bar = self.best[0] if self.best is not None else self.floor
        if bar is not None and not self._beats(score, bar):
            return False
        self.best = (score, epoch, copy.deepcopy(weights))
        return True

    def add(self, epoch: int, row: Row) -> None:
        """Append the row of the finished ``epoch`` and save the checkpoint after it, with the history and the best."""
        self.rows.append(row)
        self.checkpoint.save(epoch + 1, history=[dataclasses.asdict(r) for r in self.rows], best=self.best)

    @property
    def best_epoch(self) -> int | None:
        """The best epoch so far, or None (nothing scored, or nothing beat the floor)."""
        return None if self.best is None else self.best[1]

    def restore_best(self, load: Callable[[dict], Any]) -> int | None:
        """Put the best epoch's weights back with ``load`` (a ``load_state_dict``); that epoch, or None when there is
        no best epoch (the model keeps its last weights)."""
        if self.best is None:
            return None
        load(self.best[2])
        return self.best[1]
