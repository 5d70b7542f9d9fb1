"""Per-epoch training checkpoints: the whole state of a training loop, so an interrupted training continues.

A training loop that cellbench owns saves, at the end of every epoch, everything the
next epoch depends on: the epoch count, the trainable weights, the optimiser, the
learning-rate schedule (and an AMP scaler when there is one), the random states of
Python, NumPy (the global state and the loop's own generators) and torch, the history
so far and the best-so-far weights and score when the loop keeps its best epoch. A
training resumed from it runs the remaining epochs exactly as the uninterrupted
training would have: on the same machine and thread count it ends with the same
weights, bit for bit (``tests/methods/test_checkpoint.py``).

The state is one file, ``train-state.pt`` in the checkpoint folder, replaced
atomically after every epoch (:func:`cellbench.files.atomic_write_bytes`), so a kill
leaves the previous epoch's file whole. It holds tensors and one JSON string (epoch,
history, random states of Python and NumPy, the fingerprint) and is read with
``torch.load(weights_only=True)``: no pickled objects. The fingerprint (method, its
version and config, the seed, a digest of the training and validation samples) must
match on resume, so a changed command line is refused instead of mixing two trainings.

A loop uses it in three steps::

    checkpoint = EpochCheckpoint(folder, fingerprint=train_fingerprint(method, train, valid, seed),
                                 objects={"model": net, "optimizer": opt, "scheduler": sched},
                                 generators={"rng": rng})
    state = checkpoint.resume()               # restores the objects; epoch 0 when there is nothing
    for epoch in checkpoint.epochs(n, progress, desc="training"):
        ...
        checkpoint.save(epoch + 1, history=[...], best=best)

With ``folder=None`` nothing is read or written and ``epochs`` is the plain loop.
A loop that validates and keeps its best epoch keeps its history and best weights in
:class:`cellbench.methods.epochs.EpochHistory`, which resumes and saves the checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes, chunks_digest, folder_lock
from cellbench.methods.torch_file import read_torch_file

__all__ = ["CHECKPOINT_FILE", "EpochCheckpoint", "Resumed", "TrainableWeights", "checkpoint_folder", "has_checkpoint",
           "check_leftover", "remove_checkpoint", "samples_digest", "train_fingerprint",
           "training_checkpoint"]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "train-state.pt"
FORMAT = "cellbench-train-checkpoint"
FORMAT_VERSION = 1
#: Suffix of the checkpoint folder ``cellbench train --out M`` keeps beside ``M`` while it trains.
FOLDER_SUFFIX = ".checkpoint"


class Stateful(Protocol):
    """What torch modules, optimisers, schedulers and AMP scalers have in common."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


class TrainableWeights:
    """The trainable parameters of a module as one state (LoRA on a frozen backbone: the frozen part is not saved).

    Loading refuses a state whose names or shapes differ from the module's trainable parameters.
    """

    def __init__(self, module: Any) -> None:
        self.module = module

    def state_dict(self) -> dict:
        return {name: p.detach() for name, p in self.module.named_parameters() if p.requires_grad}

    def load_state_dict(self, state: dict) -> None:
        own = self.state_dict()
        if set(own) != set(state):
            raise KeyError(f"trainable tensors differ: {sorted(set(own) ^ set(state))[:3]}")
        bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        if bad:
            raise ValueError(f"shape of {bad[0]}: saved {tuple(state[bad[0]].shape)}, model {tuple(own[bad[0]].shape)}")
        self.module.load_state_dict(state, strict=False)


@dataclass(frozen=True)
class Resumed:
    """Where a resumed training stands: epochs done, history rows (JSON values), best so far, time spent."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best: tuple[float, int, dict] | None = None
    wall_s: float = 0.0


def checkpoint_folder(out: str | Path) -> Path:
    """The checkpoint folder of model directory ``out``: a visible sibling ``<out>.checkpoint``.

    >>> checkpoint_folder("models/dsb").as_posix()
    'models/dsb.checkpoint'
    """
    out = Path(out)
    return out.with_name(out.name + FOLDER_SUFFIX)


def has_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` holds a training checkpoint (a finished epoch to resume from)."""
    return (Path(folder) / CHECKPOINT_FILE).is_file()


def remove_checkpoint(folder: str | Path) -> None:
    """Delete a checkpoint folder (after the model directory it led to is written)."""
    shutil.rmtree(folder, ignore_errors=True)


def check_leftover(out: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a training over the checkpoint an interrupted one left beside ``out`` unless told what to do.

    Cheap: ``cellbench train`` calls it before reading any data.
    """
    folder = checkpoint_folder(out)
    if has_checkpoint(folder) and not resume and not overwrite:
        raise DataError("an interrupted training of this model left its checkpoint here: pass --resume to continue "
                        "it from its last epoch, or --overwrite to train again from the start", path=folder)


@contextlib.contextmanager
def training_checkpoint(out: str | Path, *, resume: bool, overwrite: bool) -> Iterator[Path]:
    """The checkpoint folder of a training whose model directory will be ``out``, for the ``with`` block.

    The folder (:func:`checkpoint_folder`) is locked for the block, so two trainings of the same
    model cannot write it at once. Without ``resume`` a checkpoint found there is deleted first
    (refused without ``overwrite``: :func:`check_leftover`). After the block succeeds (the model
    directory is written) the folder is removed; after an error, a stop or a kill it stays, holding
    the last finished epoch for ``--resume``.
    """
    check_leftover(out, resume=resume, overwrite=overwrite)
    folder = checkpoint_folder(out)
    with folder_lock(folder, what="training checkpoint folder"):
        if not resume:
            (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
        try:
            yield folder
        except BaseException:
            if not has_checkpoint(folder):  # stopped before the first epoch ended: nothing to keep
                remove_checkpoint(folder)
            raise
    remove_checkpoint(folder)


def samples_digest(samples: Sequence[Any] | None) -> str | None:
    """sha256 over the names, pixels and annotated instances of samples (None for none): the data a training saw.

    >>> from cellbench.data.dataset import Sample
    >>> from cellbench.instances import InstanceSet
    >>> a = Sample("a", InstanceSet.from_label_image(np.eye(4, dtype=np.int32)), array=np.zeros((4, 4), np.uint8))
    >>> samples_digest([a]) == samples_digest([a]), samples_digest(None)
    (True, None)
    """
    if samples is None:
        return None

    def chunks():
        for s in samples:
            image = np.ascontiguousarray(s.load_image())
            yield f"{s.name}|{image.shape}|{image.dtype}|{list(s.instances.classes)}".encode()
            yield image.tobytes()
            for inst in s.instances:
                yield f"{inst.bbox}|{inst.class_id}".encode()
                yield np.packbits(inst.mask).tobytes()

    return chunks_digest(chunks())


def train_fingerprint(method: Any, train: Sequence[Any], valid: Sequence[Any] | None, seed: int) -> dict:
    """What must not change between an interrupted training and its resumption: method, config, seed, data."""
    from cellbench.methods.base import config_to_dict

    return _plain({"method": method.name, "method_version": str(method.version),
                   "config": config_to_dict(method.config), "seed": int(seed),
                   "train": samples_digest(train), "valid": samples_digest(valid) if valid else None})


def _plain(value: Any) -> Any:
    """JSON values as they read back (tuples become lists), so a fingerprint compares with a saved one."""
    return json.loads(json.dumps(value))


def _differences(saved: Any, now: Any, at: str = "") -> list[str]:
    """Dotted paths where two JSON values differ.

    >>> _differences({"a": 1, "c": {"e": 2}}, {"a": 1, "c": {"e": 3}})
    ['c.e: 2 -> 3']
    """
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now)):
            out += _differences(saved.get(key), now.get(key), f"{at}.{key}" if at else key)
        return out
    return [] if saved == now else [f"{at}: {str(saved)[:40]} -> {str(now)[:40]}"]


class EpochCheckpoint:
    """Save and restore a training loop's state at epoch ends, in ``folder`` (None: off).

    Args:
        folder: the checkpoint folder (created on the first save), or None.
        fingerprint: JSON values that must be equal on resume (:func:`train_fingerprint`).
        objects: name -> object with ``state_dict`` / ``load_state_dict`` (model, optimizer,
            scheduler, scaler); restored in this order.
        generators: name -> the loop's ``numpy.random.Generator`` s.
    """

    def __init__(self, folder: str | Path | None, *, fingerprint: Mapping[str, Any],
                 objects: Mapping[str, Stateful], generators: Mapping[str, np.random.Generator] | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self.fingerprint = _plain(dict(fingerprint))
        self.objects = dict(objects)
        self.generators = dict(generators or {})
        self.start_epoch = 0
        self._wall_before = 0.0
        self._started = time.perf_counter()

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / CHECKPOINT_FILE

    # -- resume -----------------------------------------------------------------------------
    def resume(self) -> Resumed:
        """Restore the objects and random states from the last saved epoch; ``Resumed()`` when there is none."""
        self._started = time.perf_counter()
        if self.path is None or not self.path.is_file():
            return Resumed()
        import torch

        path = self.path
        saved = read_torch_file(path, what="training checkpoint",
                                hint="; delete it (or train with --overwrite) to start again")
        meta = self._meta(saved, path)
        differ = _differences(meta["fingerprint"], self.fingerprint)
        if differ:
            raise DataError(f"the training checkpoint was made by another training ({'; '.join(differ[:4])}); "
                            f"resume with the same method, config, data and seed, or start again with --overwrite",
                            path=path)
        for name, obj in self.objects.items():
            state = saved["objects"].get(name)
            if state is None:
                raise DataError(f"the training checkpoint holds no {name!r} state", path=path)
            try:
                obj.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                raise DataError(f"the checkpoint's {name} state does not fit ({str(exc).splitlines()[0]})",
                                path=path) from exc
        self._restore_random(meta["random"], saved, path)
        if meta.get("torch_threads") not in (None, torch.get_num_threads()):
            log.warning("%s was written with %s torch threads, this process uses %s: the resumed training will not "
                        "be bit-identical to an uninterrupted one (CPU kernels sum in thread-dependent order)",
                        path, meta["torch_threads"], torch.get_num_threads())
        best = None
        if meta.get("best") is not None:
            best = (float(meta["best"]["score"]), int(meta["best"]["epoch"]), dict(saved["best_state"]))
        self.start_epoch = int(meta["epoch"])
        self._wall_before = float(meta.get("wall_s", 0.0))
        return Resumed(epoch=self.start_epoch, history=list(meta["history"]), best=best, wall_s=self._wall_before)

    def _meta(self, saved: Any, path: Path) -> dict:
        if not isinstance(saved, dict) or not isinstance(saved.get("meta"), str) or not isinstance(
                saved.get("objects"), dict):
            raise DataError("not a cellbench training checkpoint (no meta / objects entries)", path=path)
        try:
            meta = json.loads(saved["meta"])
        except ValueError as exc:
            raise DataError(f"training checkpoint metadata is not JSON ({exc})", path=path) from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"not a cellbench training checkpoint (format {meta.get('format')!r})"
                            if isinstance(meta, dict) else "not a cellbench training checkpoint", path=path)
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"training checkpoint format version {meta.get('format_version')} is not "
                            f"{FORMAT_VERSION}; start again with --overwrite", path=path)
        missing = [k for k in ("epoch", "fingerprint", "history", "random") if k not in meta]
        if missing:
            raise DataError(f"training checkpoint metadata lacks {missing}", path=path)
        return meta

    def _restore_random(self, states: dict, saved: dict, path: Path) -> None:
        import torch

        try:
            version, internal, gauss = states["python"]
            random.setstate((int(version), tuple(int(v) for v in internal), gauss))
            g = states["numpy_global"]
            np.random.set_state((g["kind"], np.asarray(g["keys"], np.uint32), int(g["pos"]), int(g["has_gauss"]),
                                 float(g["cached_gaussian"])))
            for name, gen in self.generators.items():
                gen.bit_generator.state = states["generators"][name]
            torch.set_rng_state(saved["torch_rng"])
            cuda = saved.get("cuda_rng") or []
            if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"cannot restore the random states of the training checkpoint ({exc})",
                            path=path) from exc

    # -- the loop ---------------------------------------------------------------------------
    def epochs(self, n: int, progress: Any = None, **bar: Any) -> Iterable[int]:
        """Epoch indices from the resumed one to ``n`` (a progress bar over them that starts at the resumed epoch)."""
        todo = range(self.start_epoch, n)
        if progress is None:
            return todo
        if self.start_epoch:
            bar = {**bar, "initial": self.start_epoch, "total": n}
        return progress(todo, **bar)

    def save(self, epoch: int, *, history: Sequence[Any], best: tuple[float, int, dict] | None = None) -> None:
        """Write the state after ``epoch`` epochs (history rows JSON values; best = (score, epoch, weights))."""
        if self.path is None:
            return
        import torch

        gstate = np.random.get_state()
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "epoch": int(epoch),
            "fingerprint": self.fingerprint, "history": list(history),
            "best": None if best is None else {"score": float(best[0]), "epoch": int(best[1])},
            "wall_s": self.wall_s, "torch_threads": torch.get_num_threads(),
            "random": {
                "python": list(random.getstate()),
                "numpy_global": {"kind": gstate[0], "keys": [int(v) for v in gstate[1]], "pos": int(gstate[2]),
                                 "has_gauss": int(gstate[3]), "cached_gaussian": float(gstate[4])},
                "generators": {name: gen.bit_generator.state for name, gen in self.generators.items()},
            },
        }
        payload = {
            "meta": json.dumps(meta),
            "objects": {name: obj.state_dict() for name, obj in self.objects.items()},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
            "best_state": {} if best is None else {k: v.detach().cpu() for k, v in best[2].items()},
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    @property
    def wall_s(self) -> float:
        """Training time so far, the interrupted runs' included."""
        return self._wall_before + time.perf_counter() - self._started
