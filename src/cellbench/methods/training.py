"""The one training path: samples in, a model directory out, for ``cellbench train`` and the runner alike.

:func:`train_model` is what both ``cellbench train`` (:mod:`cellbench.cli.methods`)
and a grid entry of ``cellbench run`` (:mod:`cellbench.runner.entry`) call to
train a model:

1. it checks the inputs (training images, the method's return value);
2. with ``only`` set, it keeps the instances of that class alone (one model per
   class, for a method that learns one kind of object on a task with several,
   :func:`needs_class_models`);
3. it trains with the seed, on the method's own thread count (the config's
   ``threads``, set by the method itself: :func:`cellbench.methods.device.on_config_threads`);
4. a :attr:`~cellbench.methods.base.Method.resumable` method gets a checkpoint
   folder, ``<out>.checkpoint/`` beside the model directory
   (:func:`~cellbench.methods.checkpoint.training_checkpoint`): it saves every
   finished epoch there, a killed training continues from the last one, and the
   folder goes once the model directory is written;
5. the model directory is written all or nothing
   (:func:`~cellbench.methods.model_dir.save_model`).

Which images train is the caller's choice, by one of the two rules of
:func:`select_training`: ``cellbench train --images N`` keeps the first N, a
runner regime of N images draws N by the entry's seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.methods.base import Method, ProgressFactory, TrainHistory
from cellbench.methods.checkpoint import training_checkpoint
from cellbench.methods.model_dir import save_model, train_summary
from cellbench.methods.tiling import TileConfig

__all__ = ["needs_class_models", "only_class", "select_training", "train_model", "training_classes"]


def needs_class_models(method_class: type, classes: Sequence[str]) -> bool:
    """True when ``method_class`` cannot learn several classes at once and the task has more than one.

    Such a method is trained once per class, on that class's instances alone
    (``train_model(..., only=name)``), as the Glioma C6 paper trained Cellpose,
    MediarFormer and CellSeg1; a method with ``supports_classes = True`` trains one model.

    >>> class Single: pass
    >>> class Multi: supports_classes = True
    >>> needs_class_models(Single, ("A", "B")), needs_class_models(Multi, ("A", "B"))
    (True, False)
    >>> needs_class_models(Single, ("cell",))
    False
    """
    return len(classes) > 1 and not getattr(method_class, "supports_classes", False)


def training_classes(name: str, train: Sequence[Sample]) -> tuple[str, ...]:
    """The classes of the training samples, for a method ``name`` that learns them all in one model.

    Refuses no samples, and samples whose class lists differ (the model's class heads are built
    from them), naming the method and both samples.

    >>> from cellbench.instances import InstanceSet
    >>> a = Sample("a", InstanceSet.from_label_image(np.eye(2, dtype=np.int32)))
    >>> training_classes("maskrcnn", [a, a])
    ('cell',)
    """
    if not train:
        raise DataError(f"{name}: no training images")
    classes = train[0].instances.classes
    for s in train[1:]:
        if s.instances.classes != classes:
            raise DataError(f"{name}: training image {s.name!r} has classes {list(s.instances.classes)}, "
                            f"{train[0].name!r} has {list(classes)}")
    return classes


def only_class(samples: Sequence[Sample], name: str) -> list[Sample]:
    """The samples with the instances of class ``name`` only, as a one-class set called ``name``."""
    return [dataclasses.replace(s, instances=s.instances.remap_classes({name: name}, (name,))) for s in samples]


def select_training(samples: Sequence[Sample], n: int | None, *, seed: int | None = None,
                    where: str | Path | None = None) -> list[Sample]:
    """The training samples: all of them (``n`` None), or ``n`` of them.

    With ``seed`` None the first ``n`` in the given order (``cellbench train
    --images N``); with a seed, ``n`` drawn by it and returned in name order (a
    runner regime of ``n`` images: every seed its own draw). Refuses ``n`` below 1
    or above the number of samples, and an empty result, naming ``where``.

    >>> from cellbench.instances import InstanceSet
    >>> s = [Sample(k, InstanceSet.from_label_image(np.eye(2, dtype=np.int32))) for k in "cab"]
    >>> [x.name for x in select_training(s, 2)], [x.name for x in select_training(s, None, seed=0)]
    (['c', 'a'], ['a', 'b', 'c'])
    """
    if seed is not None:
        samples = sorted(samples, key=lambda s: s.name)
    samples = list(samples)
    if n is not None:
        if n < 1:
            raise DataError(f"the number of training images must be at least 1, got {n}", path=where)
        if seed is None:
            samples = samples[:n]
        elif n > len(samples):
            raise DataError(f"regime asks for {n} training images, the training split has {len(samples)}", path=where)
        else:
            picked = np.random.default_rng(seed).permutation(len(samples))[:n]
            samples = [samples[i] for i in sorted(picked.tolist())]
    if not samples:
        raise DataError("no training images found", path=where)
    return samples


def train_model(
    method: Method,
    train: Sequence[Sample],
    valid: Sequence[Sample] | None = None,
    *,
    out: str | Path,
    seed: int,
    tiling: TileConfig,
    source: Mapping[str, Any] | None = None,
    only: str | None = None,
    progress: ProgressFactory | None = None,
    resume: bool = False,
    overwrite: bool = False,
    extra: Callable[[float], dict] | None = None,
) -> tuple[TrainHistory, dict]:
    """Train ``method`` (an untrained instance) and write it as model directory ``out``.

    Args:
        method: the method to train, built from its config.
        train: the training samples (:func:`select_training`).
        valid: validation samples, or None.
        out: the model directory to write (all or nothing).
        seed: the training seed, recorded in ``model.json``.
        tiling: the tiling the model predicts with, recorded in ``model.json``.
        source: where the training data came from (``model.json``'s ``train.source``).
        only: train on the instances of this class alone (one model per class).
        progress: a tqdm-like factory for the method's training loop.
        resume: continue from the checkpoint an interrupted training of ``out`` left in
            ``<out>.checkpoint/`` (resumable methods; the others train from the start).
        overwrite: replace an existing ``out`` (and, without ``resume``, a leftover checkpoint).
        extra: called with the training's wall seconds, gives ``model.json``'s ``extra`` record.

    Returns:
        The training history and the ``model.json`` record as written.
    """
    if not train:
        raise DataError(f"{method.name}: no training images")
    if only is not None:
        train, valid = only_class(train, only), (only_class(valid, only) if valid is not None else None)
    method.tiling = tiling  # validation on whole images predicts as the model will
    with contextlib.ExitStack() as stack:  # resumable methods: <out>.checkpoint/ until the model directory is written
        kwargs = {}
        if getattr(method, "resumable", False):
            kwargs["checkpoint_dir"] = stack.enter_context(training_checkpoint(out, resume=resume, overwrite=overwrite))
        started = time.perf_counter()
        history = method.train(train, valid, seed=seed, progress=progress, **kwargs)
        wall = time.perf_counter() - started
        if not isinstance(history, TrainHistory):
            raise TypeError(f"{type(method).__name__}.train returned {type(history).__name__}, not TrainHistory")
        record = save_model(method, out, train_summary=train_summary(train, source=dict(source or {})), seed=seed,
                            history=history, tiling=tiling, overwrite=overwrite,
                            extra=extra(wall) if extra is not None else None)
    return history, record
