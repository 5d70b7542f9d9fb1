"""Model directories: a trained method with everything needed to trust and reuse it.

A model directory holds ``model.json`` and a ``weights/`` folder::

    model.json   format "cellbench-model", format_version, method name and
                 version, cellbench version, the full method config
                 (preprocessing included), tiling, flatten policy, training
                 data summary, seed, training history, and a checksum of
                 every weight file
    weights/     whatever the method's ``save_weights`` wrote

:func:`save_model` writes it all or nothing (a staged folder renamed at the
end); :func:`load_model` refuses what it cannot trust (unknown format, a newer
format version, unknown method, another method version, missing or altered
weight files) with a :class:`~cellbench.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench import __version__
from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.files import file_digest, staged_dir
from cellbench.instances import DEFAULT_POLICY, FlattenPolicy, InstanceSet, policy_from_name
from cellbench.methods.base import Method, TrainHistory, config_from_dict, config_to_dict
from cellbench.methods.tiling import OLD_TILING_KEYS, TileConfig, method_tiling, move_old_tiling_keys, predict_image

__all__ = ["FORMAT", "FORMAT_VERSION", "MODEL_FILE", "WEIGHTS_DIR", "LoadedModel", "load_model", "save_model",
           "train_summary"]

FORMAT = "cellbench-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_DIR = "weights"

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A method with its weights loaded, and what its model directory says about it."""

    method: Method
    path: Path
    tiling: TileConfig
    flatten: FlattenPolicy
    seed: int | None
    history: TrainHistory
    train_summary: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.method.name

    def predict(self, image: np.ndarray, *, progress: Callable | None = None) -> InstanceSet:
        """Instances of one full-resolution image, predicted tile by tile with the model's tiling."""
        return predict_image(self.method, image, self.tiling, progress=progress)


def train_summary(samples: Sequence[Sample], *, source: dict | None = None) -> dict:
    """What a model was trained on: image names and sizes, instance counts, the data source.

    >>> from cellbench.instances import InstanceSet
    >>> s = Sample("a", InstanceSet.from_label_image(np.array([[0, 1], [2, 2]])))
    >>> train_summary([s])["n_instances"]
    2
    """
    per_class: dict[str, int] = {}
    for s in samples:
        for name, n in s.instances.class_counts().items():
            per_class[name] = per_class.get(name, 0) + n
    return {
        "source": dict(source or {}),
        "n_images": len(samples),
        "n_instances": int(sum(len(s.instances) for s in samples)),
        "per_class": per_class,
        "images": [{"name": s.name, "shape": list(s.instances.shape)} for s in samples],
    }


def _weight_files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): file_digest(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def save_model(
    method: Method,
    folder: str | Path,
    *,
    train_summary: dict,
    seed: int,
    history: TrainHistory,
    tiling: TileConfig,
    flatten: FlattenPolicy | None = None,
    overwrite: bool = False,
    extra: dict | None = None,
) -> dict:
    """Write ``method`` (trained) into model directory ``folder``; returns the ``model.json`` record.

    ``flatten`` is the policy that turns overlapping instances into label
    images for this model (training labels, predicted label TIFFs); by
    default the method config's ``flatten`` field, else priority-last.
    """
    folder = Path(folder)
    if flatten is None:
        flatten = policy_from_name(getattr(method.config, "flatten", DEFAULT_POLICY.name))
    with staged_dir(folder, overwrite=overwrite) as tmp:
        weights = tmp / WEIGHTS_DIR
        weights.mkdir()
        method.save_weights(weights)
        files = _weight_files(weights)
        if not files:
            raise DataError(f"method {method.name!r} wrote no weight files", path=folder)
        record = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": method.name,
            "method_version": str(method.version),
            "cellbench_version": __version__,
            "config": config_to_dict(method.config),
            "tiling": tiling.to_dict(),
            "flatten": {"policy": flatten.name, "params": flatten.params()},
            "train": train_summary,
            "seed": int(seed),
            "history": history.to_dict(),
            "weights": files,
            "extra": dict(extra or {}),
        }
        (tmp / MODEL_FILE).write_text(json.dumps(record, indent=2, default=_json_default))
    return record


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _read_record(folder: Path) -> dict:
    path = folder / MODEL_FILE
    if not folder.is_dir():
        raise DataError("model directory not found", path=folder)
    if not path.is_file():
        raise DataError(f"not a cellbench model directory (no {MODEL_FILE})", path=folder)
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"corrupt model file ({exc})", path=path) from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise DataError(f"unknown model format {found!r}; expected {FORMAT!r}", path=path)
    version = record.get("format_version")
    if not isinstance(version, int):
        raise DataError(f"format_version must be an integer, got {version!r}", path=path)
    if version > FORMAT_VERSION:
        raise DataError(
            f"model format version {version} is newer than this cellbench ({__version__}) reads "
            f"(up to {FORMAT_VERSION}); upgrade cellbench", path=path)
    missing = [k for k in ("method", "method_version", "config", "weights") if k not in record]
    if missing:
        raise DataError(f"model file lacks {missing}", path=path)
    for key, kind in (("method", str), ("config", dict), ("weights", dict)):
        if not isinstance(record[key], kind):
            raise DataError(f"{key} must be a JSON {'string' if kind is str else 'object'}, "
                            f"got {record[key]!r:.80}", path=path)
    return record


def _check_weight_files(folder: Path, listed: dict) -> None:
    """Every file of ``weights/`` listed in model.json with its checksum, inside ``weights/``, and no pickle.

    A pickle runs code when it is loaded, and nothing cellbench writes is
    one (torch weights are zip archives, read with ``weights_only=True``).
    """
    weights = folder / WEIGHTS_DIR
    path = folder / MODEL_FILE
    for name, digest in listed.items():
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise DataError(f"weight file {name!r} lies outside {WEIGHTS_DIR}/", path=path)
        if not isinstance(digest, str):
            raise DataError(f"checksum of weight file {name!r} must be a string, got {digest!r:.80}", path=path)
    on_disk = sorted(p for p in weights.rglob("*") if not p.is_dir()) if weights.is_dir() else []
    unlisted = [p for p in on_disk if str(p.relative_to(weights)) not in listed]
    if unlisted:
        raise DataError(f"file in {WEIGHTS_DIR}/ is not listed in {MODEL_FILE} (added after the model was saved?)",
                        path=unlisted[0])
    for name, digest in listed.items():
        file = weights / name
        if not file.is_file():
            raise DataError("weight file listed in model.json is missing", path=file)
        if file_digest(file) != digest:
            raise DataError("weight file does not match its checksum in model.json (altered or truncated)",
                            path=file)
        with open(file, "rb") as fh:
            head = fh.read(2)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode of pickle protocols 2-5
            raise DataError("weight file is a Python pickle, which can run code when loaded; "
                            "cellbench model directories hold none", path=file)


def load_model(folder: str | Path, *, method_class: type[Method] | None = None) -> LoadedModel:
    """Read a model directory written by :func:`save_model` and load the method's weights.

    The method class is looked up by the name in ``model.json``
    (:data:`cellbench.methods.METHODS`); pass ``method_class`` for a method that
    lives outside cellbench (the benchmark runner passes the class it resolved).
    Nothing named in the file is ever imported. The config is JSON (plain data)
    checked by the method's config class; a bad one is a DataError naming
    ``model.json``. Each method reads its weight files as data and checks them
    before a library builds anything from them: torch weights with
    ``weights_only=True`` and checked to be tensors, and every class or layer a
    weight file names (nnU-Net plans, a YOLO yaml, a StarDist config) checked
    against the method's list.

    A SAM or CellSeg1 model of an older cellbench holds its tiles in its config
    (``tile`` / ``tile_overlap``, beside a ``tiling`` of tile 0): they are read as
    its tiling (:func:`~cellbench.methods.tiling.move_old_tiling_keys`), so it
    predicts with the tiles it did before.
    """
    from cellbench.methods import get_method  # the table imports this module's users, not the reverse

    folder = Path(folder)
    record = _read_record(folder)
    path = folder / MODEL_FILE
    if method_class is None:
        try:
            method_class = get_method(record["method"])
        except DataError as exc:
            raise DataError(exc.problem, path=path) from exc
    elif record["method"] != method_class.name:
        raise DataError(f"model of method {record['method']!r}, expected {method_class.name!r}", path=path)
    if str(record["method_version"]) != str(method_class.version):
        raise DataError(
            f"model saved by version {record['method_version']} of method {record['method']!r}; "
            f"this cellbench has version {method_class.version}; retrain it with this cellbench", path=path)
    weights = folder / WEIGHTS_DIR
    _check_weight_files(folder, record["weights"])
    values, old_tiling = record["config"], None
    if isinstance(values, dict) and getattr(method_class, "tiles_itself", False) and set(OLD_TILING_KEYS) & set(values):
        values = move_old_tiling_keys(method_class, values, source=path, level=logging.INFO)
        old_tiling = values.pop("tiling")
    try:
        config = config_from_dict(method_class.Config, values, source=path)
    except (ValueError, TypeError) as exc:  # a config class's own checks (unknown names, ranges)
        if isinstance(exc, DataError):
            raise
        raise DataError(f"bad {method_class.name} config ({exc})", path=path) from exc
    try:
        tiling = TileConfig.from_dict(record.get("tiling") or {"tile": 0, "overlap": 0})
        if old_tiling is not None:
            if tiling.tile:
                log.warning("%s: the model was predicted with tiles of %s inside tiles of %s; this cellbench "
                            "tiles once, with %s", path, old_tiling, tiling.to_dict(), old_tiling)
            tiling = method_tiling(method_class, old_tiling, config=config, source=path)
        flat = record.get("flatten") or {"policy": DEFAULT_POLICY.name}
        flatten = policy_from_name(flat["policy"])
        history = TrainHistory.from_dict(record.get("history") or {})
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(f"bad tiling, flatten or history record ({exc})", path=path) from exc
    method = method_class(config)
    method.tiling = tiling
    try:
        method.load_weights(weights)
    except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot load the {method_class.name} weights ({type(exc).__name__}: {exc})",
                        path=weights) from exc
    return LoadedModel(
        method=method, path=folder, tiling=tiling, flatten=flatten, seed=record.get("seed"),
        history=history, train_summary=record.get("train") or {}, record=record,
    )
