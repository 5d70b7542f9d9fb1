"""The figures of a set of images, added up one image at a time, and the per-image records, in memory or on disk.

:class:`Tally` is all an evaluation keeps of the images it has scored: each
metric's parts summed (the pooled figures), each averaged value of every image
(8 bytes each, which the median and standard deviation over images need), the
parts of a metric whose summary reads every image's part (COCO: the ranked
detections), and the same for each class. An image's overlaps, instances and
pixels are gone once it is scored. :class:`Evaluation` is the result: the
tally's figures, and the per-image records either kept as
:class:`ImageResult` objects (the default) or in a file of one JSON record per
line (:class:`PerImageFile`), which ``to_dict``, :meth:`Evaluation.write_json`
and :meth:`Evaluation.to_csv` read back one record at a time.

Every figure is computed as a whole-set computation would: parts are summed in
image order from the metric's ``zero`` (:meth:`~cellbench.metrics.base.Metric.add`),
and the mean, median and sample std are numpy's over the same float64 values.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import textwrap
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellbench.files import atomic_writer
from cellbench.matching import Counts
from cellbench.metrics.base import Metric
from cellbench.metrics.coco import CocoImage, CocoMetric, CocoResult
from cellbench.metrics.dice import PixelDice
from cellbench.metrics.matched_counts import MatchedCounts
from cellbench.metrics.registry import resolve_metrics

__all__ = ["Evaluation", "ImageResult", "PerImageFile", "Tally", "read_records", "threshold_key"]


def threshold_key(t: float) -> str:
    """The key of an IoU threshold in result dicts, as Python writes the float.

    >>> threshold_key(0.5), threshold_key(1)
    ('0.5', '1.0')
    """
    return repr(float(t))


@dataclass(frozen=True)
class ImageResult:
    """One image's part of every metric (by metric name; a tuple of parts, one per threshold, for the
    per-threshold ones) and, for a per-class evaluation, the same for each class alone."""

    name: str
    n_gt: int
    n_pred: int
    parts: Mapping[str, Any]
    per_class: dict[str, ImageResult] = field(default_factory=dict)

    @property
    def counts(self) -> tuple[Counts, ...]:
        """The matching counts at each threshold."""
        return self.parts[MatchedCounts.name]

    @property
    def dice(self) -> float | None:
        """Pixel Dice of the foregrounds (None when not scored)."""
        part = self.parts.get(PixelDice.name)
        return None if part is None else part.dice

    @property
    def coco(self) -> tuple[CocoImage, ...] | None:
        """The COCO intermediates, one per category (None when not scored)."""
        part = self.parts.get(CocoMetric.name)
        return None if part is None else part.images

    def to_dict(self, metrics: Sequence[Metric], thresholds: Sequence[float]) -> dict:
        out = {"image": self.name, "n_gt": self.n_gt, "n_pred": self.n_pred}
        by_iou = {threshold_key(t): {} for t in thresholds}
        for m in metrics:
            part = self.parts[m.name]
            if not m.per_threshold:
                out.update(m.values(part))
                continue
            for t, p in zip(thresholds, part):
                by_iou[threshold_key(t)].update(m.values(p))
        out["by_iou"] = by_iou
        return out


class _Column:
    """One averaged value of every image so far: float64 values and whether each is defined (not None)."""

    __slots__ = ("defined", "values")

    def __init__(self) -> None:
        self.values = array("d")
        self.defined = bytearray()

    def append(self, value: float | None) -> None:
        self.defined.append(value is not None)
        self.values.append(0.0 if value is None else value)

    def stats(self) -> tuple[float | None, float | None, float | None]:
        """Mean, median and sample std (ddof 1, as pandas) of the defined values (None without any)."""
        if not self.values:
            return None, None, None
        vals = np.frombuffer(self.values, dtype=np.float64)[np.frombuffer(self.defined, dtype=bool)]
        if vals.size == 0:
            return None, None, None
        std = float(np.std(vals, ddof=1)) if vals.size > 1 else None
        return float(np.mean(vals)), float(np.median(vals)), std


def _summarised(m: Metric) -> bool:
    """The metric has a figure of the whole set (its own ``summary``), which reads every image's part."""
    return type(m).summary is not Metric.summary


class Tally:
    """The running figures of a set of images (see the module docstring): :meth:`add` one image's result,
    read :meth:`rows`, :meth:`summaries` and :meth:`per_class` at any time."""

    def __init__(self, metrics: Sequence[Metric], thresholds: Sequence[float]) -> None:
        self.metrics = tuple(metrics)
        self.thresholds = tuple(thresholds)
        self.n_images = 0
        self.n_gt = 0
        self.nonempty = [0] * len(self.thresholds)  # images with defined matching counts, per threshold
        self.totals: dict[str, Any] = {
            m.name: (tuple(m.zero for _ in self.thresholds) if m.per_threshold else m.zero)
            for m in self.metrics if m.pooled
        }
        self.columns = {(m.name, k, v): _Column() for m in self.metrics for k in self._keys(m) for v in m.averaged}
        self.kept: dict[str, list] = {m.name: [] for m in self.metrics if _summarised(m)}
        self.names: list[str] = []
        self.classes: dict[str, Tally] = {}

    def _keys(self, m: Metric) -> Sequence[int | None]:
        """The threshold positions of a metric's parts (None for its one threshold-free part)."""
        return range(len(self.thresholds)) if m.per_threshold else (None,)

    def add(self, result: ImageResult) -> None:
        """Count one image's result in (and its classes' results in their class's tally)."""
        self.n_images += 1
        self.n_gt += result.n_gt
        for k, c in enumerate(result.counts):
            self.nonempty[k] += not c.empty
        for m in self.metrics:
            part = result.parts[m.name]
            for k in self._keys(m):
                p = part if k is None else part[k]
                if m.averaged:
                    values = m.values(p)
                    for v in m.averaged:
                        self.columns[(m.name, k, v)].append(values[v])
            if m.pooled:
                total = self.totals[m.name]
                self.totals[m.name] = (m.add(total, part) if not m.per_threshold
                                       else tuple(m.add(t, p) for t, p in zip(total, part)))
            if m.name in self.kept:
                self.kept[m.name].append(part)
        if self.kept:
            self.names.append(result.name)
        for cname, sub in result.per_class.items():
            if cname not in self.classes:
                self.classes[cname] = Tally([m for m in self.metrics if m.per_class], self.thresholds)
            self.classes[cname].add(sub)

    def pooled_counts(self, k: int) -> Counts:
        """The matching counts at the ``k``-th threshold summed over images."""
        return self.totals[MatchedCounts.name][k]

    def _rows(self, m: Metric, k: int | None) -> tuple[dict, dict]:
        pooled = {}
        if m.pooled:
            pooled = m.values(self.totals[m.name] if k is None else self.totals[m.name][k])
        mean = {}
        for value in m.averaged:
            mean[value], median, std = self.columns[(m.name, k, value)].stats()
            if value in m.spread:
                mean[f"{value}_median"] = median
                mean[f"{value}_std"] = std
        return pooled, mean

    def rows(self) -> tuple[dict, dict]:
        """Pooled and image-mean rows per threshold: each per-threshold metric at that threshold, then the
        threshold-free ones (the same in every row), then ``n_images`` (images with defined matching counts)."""
        free_pooled, free_mean = {}, {}
        for m in self.metrics:
            if not m.per_threshold:
                p, i = self._rows(m, None)
                free_pooled.update(p)
                free_mean.update(i)
        pooled, image_mean = {}, {}
        for k, t in enumerate(self.thresholds):
            row_pooled, row_mean = {}, {}
            for m in self.metrics:
                if m.per_threshold:
                    p, i = self._rows(m, k)
                    row_pooled.update(p)
                    row_mean.update(i)
            pooled[threshold_key(t)] = {**row_pooled, **free_pooled}
            image_mean[threshold_key(t)] = {**row_mean, **free_mean, "n_images": self.nonempty[k]}
        return pooled, image_mean

    def summaries(self) -> dict[str, Any]:
        """The figures of the whole set by metric name (COCO), for the metrics that have one."""
        out = {}
        for m in self.metrics:
            if m.name in self.kept:
                summary = m.summary(self.kept[m.name], self.names)
                if summary is not None:
                    out[m.name] = summary
        return out

    def per_class(self) -> dict:
        """Pooled and image-mean rows of each class alone, and ``macro``: the mean over the classes with GT
        of their pooled figures."""
        out = {}
        for cname, tally in self.classes.items():
            pooled, image_mean = tally.rows()
            out[cname] = {"pooled": pooled, "image_mean": image_mean}
        scored = [c for c, tally in self.classes.items() if tally.n_gt]
        metrics = [m for m in self.metrics if m.per_class]
        macro = {}
        for t in self.thresholds:
            key = threshold_key(t)
            macro[key] = {
                v: _mean_defined([out[c]["pooled"][key][v] for c in scored])
                for m in metrics if m.pooled for v in m.averaged
            }
        out["macro"] = {"classes": scored, "pooled": macro}
        return out


def _mean_defined(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


class PerImageFile:
    """Per-image records written as they come, one JSON object a line, into a hidden sibling of ``path`` that
    becomes ``path`` at :meth:`close` (:func:`~cellbench.files.atomic_writer`); :meth:`discard` (or an error
    in a ``with`` block) removes it, so ``path`` is never half-written.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "per_image.jsonl"
    >>> with PerImageFile(path) as f:
    ...     f.write({"image": "a", "n_gt": 3})
    >>> list(read_records(path))
    [{'image': 'a', 'n_gt': 3}]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        self._fh = self._stack.enter_context(atomic_writer(self.path))

    def write(self, record: Mapping) -> None:
        self._fh.write(json.dumps(record).encode() + b"\n")

    def close(self) -> Path:
        """Complete the file (it appears under its name now) and return its path."""
        self._stack.close()
        return self.path

    def discard(self) -> None:
        """Remove what was written; ``path`` is untouched."""
        stop = RuntimeError("per-image records discarded")
        self._stack.__exit__(RuntimeError, stop, None)

    def __enter__(self) -> PerImageFile:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


def read_records(path: str | Path) -> Iterator[dict]:
    """The records of a :class:`PerImageFile`, one at a time."""
    with open(path, "rb") as fh:
        for line in fh:
            yield json.loads(line)


@dataclass(frozen=True)
class Evaluation:
    """Everything :func:`~cellbench.metrics.evaluate` computed, with the metrics and settings that produced it.

    ``images`` holds each image's :class:`ImageResult` unless the per-image
    records went to ``per_image_file`` (then it is empty). ``summaries`` holds
    the figures of whole sets of images by metric name (COCO). ``tally`` is
    built from ``images`` when not given.
    """

    thresholds: tuple[float, ...]
    settings: dict
    images: tuple[ImageResult, ...] = ()
    metrics: tuple[Metric, ...] = field(default_factory=resolve_metrics)
    summaries: Mapping[str, Any] = field(default_factory=dict)
    tally: Tally | None = field(default=None, repr=False)
    per_image_file: Path | None = None

    def __post_init__(self) -> None:
        if self.tally is None:
            tally = Tally(self.metrics, self.thresholds)
            for r in self.images:
                tally.add(r)
            object.__setattr__(self, "tally", tally)

    @property
    def n_images(self) -> int:
        return self.tally.n_images

    @property
    def coco(self) -> CocoResult | None:
        """The COCO figures (None when not scored)."""
        return self.summaries.get(CocoMetric.name)

    def pooled(self, threshold: float) -> Counts:
        """Summed counts at one threshold."""
        return self.tally.pooled_counts(self.thresholds.index(threshold))

    def per_image_records(self) -> Iterator[dict]:
        """Each image's record (as in ``to_dict()["per_image"]``), one at a time, from memory or the file."""
        if self.per_image_file is not None:
            yield from read_records(self.per_image_file)
        else:
            for r in self.images:
                yield r.to_dict(self.metrics, self.thresholds)

    def _dict(self, per_image: Any) -> dict:
        pooled, image_mean = self.tally.rows()
        out = {
            "iou_thresholds": [float(t) for t in self.thresholds],
            "settings": dict(self.settings),
            "n_images": self.n_images,
            "pooled": pooled,
            "image_mean": image_mean,
            "per_image": per_image,
        }
        for name, summary in self.summaries.items():
            out[name] = summary.summary()
        if self.settings.get("per_class"):
            out["per_class"] = self.tally.per_class()
        return out

    def to_dict(self, *, per_image: bool = True) -> dict:
        """Every figure as plain JSON types; ``per_image=False`` leaves the per-image records out (a file of
        them is not read)."""
        d = self._dict(list(self.per_image_records()) if per_image else None)
        if not per_image:
            del d["per_image"]
        return d

    def write_json(self, path: str | Path, *, settings: Mapping | None = None) -> None:
        """Write :meth:`to_dict` as indented JSON, atomically, with ``settings`` added to its settings; the
        per-image records are copied one at a time (the same text as ``json.dumps(to_dict(), indent=2)``)."""
        mark = "\x00per_image\x00"
        d = self._dict(mark)
        d["settings"].update(settings or {})
        head, tail = json.dumps(d, indent=2).split(json.dumps(mark), 1)
        with atomic_writer(path) as fh:
            fh.write(head.encode())
            sep = "[\n"
            for record in self.per_image_records():
                fh.write((sep + textwrap.indent(json.dumps(record, indent=2), "    ")).encode())
                sep = ",\n"
            fh.write(("[]" if sep == "[\n" else "\n  ]").encode() + tail.encode())

    def _rows(self) -> Iterator[dict]:
        for d in self.per_image_records():
            by_iou = d.pop("by_iou")
            row = dict(d)
            for key, values in by_iou.items():
                for metric, value in values.items():
                    row[f"{metric}@{key}"] = value
            yield row

    def per_image_rows(self) -> list[dict]:
        """One flat row per image (the CSV table): name, counts, every threshold-free value, and every other
        value at every threshold."""
        return list(self._rows())

    def to_csv(self, path: str | Path) -> None:
        """Write the per-image table (atomically, one row at a time)."""
        rows = self._rows()
        first = next(rows, None)
        free = [v for m in self.metrics if not m.per_threshold for v in m.averaged]
        fields = list(first) if first is not None else ["image", "n_gt", "n_pred", *free]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        with atomic_writer(path) as fh:
            for row in _chain(first, rows):
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
                if buf.tell() > 1 << 16:
                    fh.write(buf.getvalue().encode())
                    buf.seek(0)
                    buf.truncate()
            fh.write(buf.getvalue().encode())


def _chain(first: dict | None, rest: Iterator[dict]) -> Iterator[dict]:
    if first is not None:
        yield first
        yield from rest
