"""The one small interface every segmentation method implements.

A method is a class with a config dataclass, ``train`` and ``predict``, and a
way to save and load its weights. Everything else (model directories,
tiling, the CLI, the benchmark runner) is built on these few calls, so a new
method is one module and one line in :data:`cellbench.methods.METHODS`.

The contract, checked by ``tests/methods/test_contract.py`` for every method:

* ``Method(config)`` builds an untrained method; ``config`` is an instance of
  ``Method.Config`` (a frozen dataclass of plain JSON values) or ``None`` for
  the defaults.
* ``train(train, valid, *, seed, progress, checkpoint_dir)`` fits on samples and
  returns a :class:`TrainHistory`. Same samples and seed give the same weights.
  ``checkpoint_dir`` (a folder or None) is part of every method's signature: a
  method with ``resumable = True`` saves its whole training state there at the
  end of every epoch and, when the folder already holds one, continues from it
  to the same weights (:mod:`cellbench.methods.checkpoint`); with None it trains
  as before. The framework (:func:`cellbench.methods.training.train_model`)
  passes a folder to resumable methods only; the others accept the keyword and
  ignore it.
* ``predict(image)`` returns an :class:`~cellbench.instances.InstanceSet` of
  the image's height and width (scores set when the method has them).
* ``save_weights(folder)`` / ``load_weights(folder)`` write and read the
  method's own files inside a model directory; ``predict`` after a reload
  gives the same result as before it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

if TYPE_CHECKING:
    from cellbench.methods.tiling import TileConfig

__all__ = ["EpochRecord", "Method", "ProgressFactory", "TrainHistory", "config_from_dict", "config_to_dict",
           "merge_config"]

#: Something that wraps an iterable with a progress bar, e.g. ``tqdm.tqdm``.
ProgressFactory = Callable[..., Any]


@dataclass(frozen=True)
class EpochRecord:
    """One line of training history."""

    epoch: int
    loss: float
    val_score: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainHistory:
    """What training did: per-epoch losses, the validation metric and the time taken."""

    epochs: tuple[EpochRecord, ...] = ()
    val_metric: str | None = None
    best_epoch: int | None = None
    wall_s: float | None = None
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainHistory:
        epochs = tuple(EpochRecord(**e) for e in d.get("epochs", ()))
        return cls(**{**d, "epochs": epochs})


class Method(ABC):
    """Base class of all methods. Subclasses set the class attributes and the four calls."""

    #: Name used on the command line and in model directories.
    name: ClassVar[str]
    #: Bumped when saved weights of an older version can no longer be loaded.
    version: ClassVar[str] = "1"
    #: One line for ``cellbench methods``.
    description: ClassVar[str] = ""
    #: Import names this method needs beyond the core (``cellbench methods`` checks them).
    requires: ClassVar[tuple[str, ...]] = ()
    #: The pip extra that installs them.
    extra: ClassVar[str | None] = None
    #: Licence of the library the method runs on, shown by ``cellbench methods``; None: BSD-compatible.
    licence: ClassVar[str | None] = None
    #: The frozen dataclass of this method's settings.
    Config: ClassVar[type]
    #: Tiling recorded in a new model directory when the user gives none (None: ``TileConfig()``,
    #: 512 px tiles, 128 px overlap; :meth:`tiling_defaults` when it depends on the config). A method that
    #: predicts whole images (and may tile inside its own library) sets ``TileConfig(tile=0)``.
    default_tiling: ClassVar[TileConfig | None] = None
    #: True when ``predict(image, *, tiling=None, progress=None)`` cuts the image into tiles itself, with the
    #: model's tiling: :func:`~cellbench.methods.tiling.predict_image` then hands it the whole image and the
    #: tiling instead of stitching tiles of it, and a tile of 0 is refused. SAM and CellSeg1 do (their point
    #: grid runs per tile and keeps overlapping instances); their configs held the tiling as ``tile`` /
    #: ``tile_overlap`` before (:func:`~cellbench.methods.tiling.move_old_tiling_keys`).
    tiles_itself: ClassVar[bool] = False
    #: Named sets of config values (as in a ``--config`` file, ``tiling`` included), e.g. ``"cpu"``:
    #: settings that finish on a CPU where the published defaults assume a GPU. ``cellbench train
    #: --preset NAME`` and ``preset:`` in an experiment start from one; the user's config goes over it.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: True when ``train`` saves its state in ``checkpoint_dir`` after every epoch and continues an interrupted
    #: training from its last epoch (``cellbench train --resume``, a resumed ``cellbench run``); the others
    #: ignore ``checkpoint_dir`` and start again from the beginning.
    resumable: ClassVar[bool] = False
    #: False when training draws no random numbers (a grid search, a calibration): every seed gives the
    #: same model, so a run trains it once, at its first seed, where the regime trains on all images.
    seeded: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        self.config = self.Config() if config is None else config
        #: The tiling this model's images are predicted with (``model.json``'s ``tiling``), set by
        #: :func:`~cellbench.methods.training.train_model` before training and by ``load_model``; None
        #: when the method is used on its own. A method that validates on whole images tiles them with it.
        self.tiling: TileConfig | None = None
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, not {type(self.config).__name__}")

    @classmethod
    def tiling_defaults(cls, config: Any = None) -> dict[str, int]:
        """The tile and overlap of a model of ``config`` (None: the default config) where its ``tiling`` says
        nothing: :attr:`default_tiling`'s. A method whose default depends on its config overrides this.

        >>> from cellbench.methods.adapters.watershed import WatershedMethod
        >>> WatershedMethod.tiling_defaults()
        {'tile': 0, 'overlap': 128}
        """
        from cellbench.methods.tiling import TileConfig

        return (cls.default_tiling or TileConfig()).to_dict()

    @property
    def prediction_tiling(self) -> TileConfig:
        """The tiling whole images are predicted with: :attr:`tiling`, else (a method used on its own) the
        default for its config."""
        from cellbench.methods.tiling import method_tiling

        return self.tiling or method_tiling(type(self), config=self.config)

    @abstractmethod
    def train(
        self,
        train: Sequence[Sample],
        valid: Sequence[Sample] | None = None,
        *,
        seed: int = 0,
        progress: ProgressFactory | None = None,
        checkpoint_dir: Path | None = None,
    ) -> TrainHistory:
        """Fit on ``train`` (select on ``valid`` when given).

        Args:
            train: the training samples.
            valid: validation samples (model selection, the validation score), or None.
            seed: the seed of every random number the training draws.
            progress: a tqdm-like factory wrapping the training's loop, or None.
            checkpoint_dir: where a :attr:`resumable` method keeps its per-epoch training state and
                continues from the last finished epoch (None: no checkpoint). Methods that are not
                resumable accept it and ignore it; the framework only passes it to resumable ones.
        """

    @abstractmethod
    def predict(self, image: np.ndarray) -> InstanceSet:
        """Instances found in one image (H x W or H x W x C)."""

    @abstractmethod
    def save_weights(self, folder: Path) -> None:
        """Write this method's learned state into ``folder`` (which exists)."""

    @abstractmethod
    def load_weights(self, folder: Path) -> None:
        """Read what :meth:`save_weights` wrote."""


def merge_config(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """``over`` merged into ``base`` (config values as in a ``--config`` file); nested mappings such as
    ``preprocess`` are merged key by key, so a preset's other nested values stay.

    >>> merge_config({"a": 1, "p": {"x": 1, "y": 2}}, {"p": {"y": 3}})
    {'a': 1, 'p': {'x': 1, 'y': 3}}
    """
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            value = merge_config(out[key], value)
        out[key] = value
    return out


def config_to_dict(config: Any) -> dict:
    """A config dataclass as plain JSON values."""
    return dataclasses.asdict(config)


def config_from_dict(config_class: type, values: Mapping[str, Any], *, source: Path | str | None = None) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys with their names.

    Nested dataclass fields (sections) are built from nested dicts; lists become
    tuples when the default is a tuple. A key that is unknown where it was given
    but is a field of a section is named with its path, so a flat key from an
    older config says where it lives now.

    >>> @dataclass(frozen=True)
    ... class Train:
    ...     epochs: int = 300
    >>> @dataclass(frozen=True)
    ... class Config:
    ...     backbone: str = "a"
    ...     train: Train = field(default_factory=Train)
    >>> config_from_dict(Config, {"train": {"epochs": 8}}).train.epochs
    8
    >>> config_from_dict(Config, {"epochs": 8})
    Traceback (most recent call last):
    cellbench.errors.DataError: unknown Config field(s) ['epochs']; 'epochs' is now train.epochs; known: ['backbone', 'train']
    """
    return _build_config(config_class, values, source=source, root=config_class, at="")


def _build_config(config_class: type, values: Mapping[str, Any], *, source: Path | str | None, root: type,
                  at: str) -> Any:
    where = f"{root.__name__}{'.' if at else ''}{at}"
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        parts = [f"unknown {where} field(s) {unknown}"]
        for key in unknown:
            paths = [p if "." in p else f"{p} (top level)" for p in _field_paths(root, key)]
            if paths:
                parts.append(f"{key!r} is now {' or '.join(paths)}")
        parts.append(f"known: {sorted(known)}")
        raise DataError("; ".join(parts), path=source)
    kwargs = {}
    defaults = config_class()
    for key, value in values.items():
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default) and not isinstance(value, type(default)):
            if not isinstance(value, Mapping):
                raise DataError(f"{where}.{key} is a section of settings: give a mapping, got {value!r}", path=source)
            value = _build_config(type(default), value, source=source, root=root, at=f"{at}.{key}".lstrip("."))
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return config_class(**kwargs)


def _field_paths(config_class: type, name: str, at: str = "") -> list[str]:
    """Dotted paths of every field called ``name`` in ``config_class`` and its sections."""
    defaults = config_class()
    paths = []
    for f in dataclasses.fields(config_class):
        path = f"{at}{f.name}"
        if f.name == name:
            paths.append(path)
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            paths += _field_paths(type(value), name, f"{path}.")
    return paths
