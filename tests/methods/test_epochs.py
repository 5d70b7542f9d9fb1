"""Epoch bookkeeping: the validation schedule, the best epoch (higher or lower, a floor), history saved and resumed."""

from __future__ import annotations

import dataclasses

import pytest

from cellbench.methods.base import EpochRecord
from cellbench.methods.checkpoint import EpochCheckpoint
from cellbench.methods.epochs import EpochHistory, validation_due


def test_validation_is_due_every_n_epochs_and_after_the_last():
    assert [validation_due(e, 7, 3) for e in range(7)] == [False, False, True, False, False, True, True]
    assert [validation_due(e, 3, None) for e in range(3)] == [False, False, True]


class Store:
    """A state_dict / load_state_dict pair over one mutable value."""

    def __init__(self) -> None:
        self.value = [0]

    def state_dict(self) -> dict:
        return {"w": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["w"]


@pytest.mark.parametrize(("better", "floor", "scores", "kept"), [
    ("higher", None, [0.2, 0.5, 0.5, 0.1], 1),  # ties keep the earlier epoch
    ("lower", None, [0.9, 0.4, 0.6], 1),
    ("higher", 0.3, [0.1, 0.2], None),  # nothing beat the floor: the last weights stay
    ("higher", 0.3, [0.1, 0.4], 1),
])
def test_the_best_epoch_is_kept_as_a_copy_and_restored(better, floor, scores, kept):
    store = Store()
    history = EpochHistory(EpochCheckpoint(None, fingerprint={}, objects={}), better=better, floor=floor)
    for epoch, score in enumerate(scores):
        store.value[0] = epoch  # the weights change in place after they were offered
        history.score(epoch, score, store.state_dict())
        history.add(epoch, EpochRecord(epoch=epoch, loss=1.0, val_score=score))
    assert history.restore_best(store.load_state_dict) == kept
    assert store.value == [len(scores) - 1 if kept is None else kept]
    assert [r.val_score for r in history.rows] == scores


def test_history_and_best_resume_from_the_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 1)
    checkpoint = EpochCheckpoint(tmp_path, fingerprint={"run": 1}, objects={"model": net})
    history = EpochHistory.resume(checkpoint)
    best = net.weight.detach().clone()
    history.score(0, 0.5, net.state_dict())
    history.add(0, EpochRecord(epoch=0, loss=2.0, val_score=0.5, extra={"lr": 0.1}))
    again = EpochHistory.resume(EpochCheckpoint(tmp_path, fingerprint={"run": 1}, objects={"model": net}))
    assert again.rows == history.rows and again.best_epoch == 0
    with torch.no_grad():
        net.weight.fill_(3.0)
    assert not again.score(1, 0.4, net.state_dict())
    assert again.restore_best(net.load_state_dict) == 0 and torch.equal(net.weight, best)


def test_rows_of_another_record_type_round_trip(tmp_path):
    @dataclasses.dataclass
    class Loss:
        epoch: int
        loss: float

    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(1, 1)
    history = EpochHistory.resume(EpochCheckpoint(tmp_path, fingerprint={}, objects={"model": net}), row=Loss)
    history.add(0, Loss(0, 1.5))
    again = EpochHistory.resume(EpochCheckpoint(tmp_path, fingerprint={}, objects={"model": net}), row=Loss)
    assert again.rows == [Loss(0, 1.5)] and again.best is None


def test_better_must_be_higher_or_lower():
    with pytest.raises(ValueError, match="higher"):
        EpochHistory(EpochCheckpoint(None, fingerprint={}, objects={}), better="max")
