"""Tiled prediction: full-resolution images cut into overlapping tiles, predicted, stitched.

Glioma C6 images are 2592 x 1944; squashing them to a network's input size
shrinks every cell (the CellSeg1 reference code does that, and it hurts).
:func:`predict_tiled` runs any per-image predictor on overlapping windows
and stitches the instances back into one :class:`~cellbench.instances.InstanceSet`
in full-image coordinates.

The stitching rule, per instance found in a tile:

* **clean** - it touches no *inner* edge of its tile (an edge that is not the
  image border), so the tile saw all of it; **cut** otherwise.
* Each tile owns a **core**: the overlap between two neighbouring tiles is
  split at its middle, so the cores partition the image.
* Candidates are taken in this order: clean with centroid in the tile's core,
  other clean ones, then cut ones (larger first within each group). A
  candidate is dropped when it covers more than half of a kept instance
  *from another tile* (or half of it is covered by one): that is the same
  cell seen twice. Two cut pieces from different tiles that agree on the
  pixels both tiles saw are joined into one instance (a cell larger than the
  overlap).
* Instances from the same tile never suppress each other, so a method that
  emits overlapping instances keeps them.

A cell smaller than the overlap (in both directions) is always seen clean by
some tile, so it comes out exactly as the predictor found it in that tile,
once, whatever tile border it crosses.

A model's :class:`TileConfig` is the one tiling it has (``model.json``'s
``tiling``, chosen by ``--tile`` / ``tiling:``). A method that tiles inside its
own ``predict`` (:attr:`~cellbench.methods.base.Method.tiles_itself`: SAM and
CellSeg1, whose point grid keeps overlapping instances) is given that tiling
and the whole image, instead of being run tile by tile here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cellbench.errors import DataError
from cellbench.instances import Instance, InstanceSet
from cellbench.instances.box_index import BoxIndex

if TYPE_CHECKING:
    from cellbench.methods.base import Method

__all__ = ["OLD_TILING_KEYS", "SLIDE_TILING", "TileConfig", "Window", "method_tiling", "move_old_tiling_keys",
           "override_tiling", "predict_image", "predict_tiled", "slide_tiling", "tile_windows"]

log = logging.getLogger(__name__)

Window = tuple[int, int, int, int]
"""(y0, x0, y1, x1) of one tile in image pixels, half open."""

_SAME_CELL = 0.5  # fraction of the smaller instance two tiles must share to be one cell


@dataclass(frozen=True)
class TileConfig:
    """How to cut an image into tiles.

    Attributes:
        tile: tile side in pixels; 0 means never tile (one tile, the whole image).
        overlap: pixels shared by neighbouring tiles; cells smaller than this
            are stitched exactly.

    >>> TileConfig(tile=256, overlap=64).step
    192
    """

    tile: int = 512
    overlap: int = 128

    def __post_init__(self) -> None:
        if int(self.tile) != self.tile or self.tile < 0:
            raise ValueError(f"tile must be a non-negative integer, got {self.tile!r}")
        if int(self.overlap) != self.overlap or self.overlap < 0:
            raise ValueError(f"overlap must be a non-negative integer, got {self.overlap!r}")
        if self.tile and self.overlap >= self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than tile ({self.tile})")

    @property
    def step(self) -> int:
        return self.tile - self.overlap

    def to_dict(self) -> dict:
        return {"tile": int(self.tile), "overlap": int(self.overlap)}

    @classmethod
    def from_dict(cls, d: dict) -> TileConfig:
        unknown = sorted(set(d) - {"tile", "overlap"})
        if unknown:
            raise DataError(f"unknown tiling field(s) {unknown}; known: ['overlap', 'tile']")
        return cls(**d)


def method_tiling(method_class: type, values: Mapping[str, Any] | None = None, *, config: Any = None,
                  source: str | Path | None = None) -> TileConfig:
    """The tiling a model of ``method_class`` (and ``config``) predicts with, hence records in its model directory.

    ``values`` (the ``tiling`` entry of a ``cellbench train --config`` file or of
    an experiment's method) override the method's defaults for ``config``
    (:meth:`~cellbench.methods.base.Method.tiling_defaults`: its ``default_tiling``,
    else :class:`TileConfig`, 512 px tiles, 128 px overlap), field by field. A
    ``tile`` given without ``overlap`` gets a quarter of it as overlap (the
    ratio of the default), whatever the method's default overlap. A method that
    tiles itself refuses tile 0.

    >>> from cellbench.methods.adapters.watershed import WatershedMethod
    >>> method_tiling(WatershedMethod, {"tile": 96})
    TileConfig(tile=96, overlap=24)
    """
    if hasattr(method_class, "tiling_defaults"):
        default: TileConfig | dict = method_class.tiling_defaults(config)
    else:  # a method class that does not derive from Method
        default = getattr(method_class, "default_tiling", None) or TileConfig()
    tiling = override_tiling(default, values, source=source)
    if getattr(method_class, "tiles_itself", False) and tiling.tile == 0:
        raise DataError(f"{getattr(method_class, 'name', method_class.__name__)} predicts tile by tile: "
                        f"tiling.tile must be at least 1 px, got 0", path=source)
    return tiling


def override_tiling(base: TileConfig | Mapping[str, int], values: Mapping[str, Any] | None, *,
                    source: str | Path | None = None) -> TileConfig:
    """``values`` over ``base``, field by field; a ``tile`` without ``overlap`` gets a quarter of it.

    The one rule for every place a tiling is overridden: a training config's
    ``tiling``, an experiment's, and ``cellbench predict --tile/--overlap``
    over the tiling a model directory recorded.

    >>> override_tiling(TileConfig(tile=512, overlap=64), {"tile": 200})
    TileConfig(tile=200, overlap=50)
    >>> override_tiling(TileConfig(tile=512, overlap=64), {"overlap": 32})
    TileConfig(tile=512, overlap=32)

    ``base`` may be a mapping of tile and overlap, checked only once merged (a
    default overlap that only the given values make fit).
    """
    merged = dict(base) if isinstance(base, Mapping) else base.to_dict()
    if values is not None:
        if not isinstance(values, Mapping):
            raise DataError(f"tiling must be a mapping of tile and overlap, got {values!r}", path=source)
        merged.update(values)
        if "tile" in values and "overlap" not in values and isinstance(values["tile"], int):
            merged["overlap"] = values["tile"] // 4
    try:
        return TileConfig.from_dict(merged)
    except DataError as exc:
        raise DataError(exc.problem, path=source) from exc
    except (ValueError, TypeError) as exc:
        raise DataError(f"bad tiling {merged}: {exc}", path=source) from exc


def predict_image(
    method: Method,
    image: np.ndarray,
    tiling: TileConfig,
    *,
    progress: Callable | None = None,
) -> InstanceSet:
    """Instances of one full-resolution image: ``method`` run tile by tile with ``tiling``, stitched.

    The one way cellbench predicts an image with a method: ``cellbench predict``
    (through :meth:`~cellbench.methods.model_dir.LoadedModel.predict`) and the
    benchmark runner both call it, so a model scores the same by either path.
    ``TileConfig(tile=0)`` runs ``method.predict`` on the whole image; a method
    that :attr:`~cellbench.methods.base.Method.tiles_itself` gets the whole
    image and ``tiling`` (so nothing is tiled twice).
    """
    if getattr(method, "tiles_itself", False):
        image = np.asarray(image)
        return _checked(method.predict(image, tiling=tiling, progress=progress), image.shape[:2])
    return predict_tiled(method.predict, image, tiling, progress=progress)


#: The tiling of a model that predicts whole images (tile 0) on an image too large to read whole (an
#: :class:`~cellbench.data.image_file.ImageFile`): 1024 px tiles, cells under 128 px stitched exactly. (Measured on
#: a 4096 x 20000 band, benchmarks/wsi_predict.py: Cellpose peaked at 1.8 GB with 1024 and with 2048 px tiles.)
SLIDE_TILING = TileConfig(tile=1024, overlap=128)


def slide_tiling(tiling: TileConfig) -> TileConfig:
    """``tiling``, or :data:`SLIDE_TILING` where it says whole images: a whole slide is predicted in tiles.

    >>> slide_tiling(TileConfig(tile=0)), slide_tiling(TileConfig(tile=512, overlap=64))
    (TileConfig(tile=1024, overlap=128), TileConfig(tile=512, overlap=64))
    """
    return SLIDE_TILING if tiling.tile == 0 else tiling


#: Keys of a config that held a tiling before the model's tiling was the only one (SAM and CellSeg1,
#: the methods that tile themselves): old key -> :class:`TileConfig` field.
OLD_TILING_KEYS = {"tile": "tile", "tile_overlap": "overlap"}
_OLD_OVERLAP = 64  # tile_overlap's default in those configs; tile None (CellSeg1) was the training patch


def move_old_tiling_keys(method_class: type, values: Mapping[str, Any], *, source: str | Path | None = None,
                         level: int = logging.WARNING) -> dict:
    """``values`` (method settings, as in a config file) with the old ``tile`` / ``tile_overlap`` keys of a
    method that tiles itself moved into ``tiling``, so the model predicts with the tiles it did before.

    The mapping: ``tile: T`` (not None) is ``tiling.tile``; ``tile_overlap: V``
    is ``tiling.overlap``, 64 px (the old default) when only ``tile`` is given
    (not a quarter of it, as for a new ``tiling``). Settings that give both the
    old keys and ``tiling`` are refused. Each move is logged at ``level``,
    naming ``source``. Other methods' settings come back unchanged.

    >>> class Grid:
    ...     name, tiles_itself = "grid", True
    >>> move_old_tiling_keys(Grid, {"tile": 128, "prompt": "box"})
    {'prompt': 'box', 'tiling': {'tile': 128, 'overlap': 64}}
    """
    old = [key for key in OLD_TILING_KEYS if key in values]
    if not old or not getattr(method_class, "tiles_itself", False):
        return dict(values)
    if "tiling" in values:
        raise DataError(f"{', '.join(old)} and tiling both given: {' / '.join(old)} are the old names of "
                        f"tiling: {{tile, overlap}}; give tiling only", path=source)
    moved = {k: v for k, v in values.items() if k not in OLD_TILING_KEYS}
    tiling = {"overlap": values.get("tile_overlap", _OLD_OVERLAP)}
    if values.get("tile") is not None:
        tiling = {"tile": values["tile"], **tiling}
    moved["tiling"] = tiling
    where = f"{source}: " if source is not None else ""
    log.log(level, "%s%s settings %s are the model's tiling now: read as tiling: %s",
            where, getattr(method_class, "name", method_class.__name__), " and ".join(old), tiling)
    return moved


def _starts(length: int, tile: int, step: int) -> list[int]:
    """Window starts along one axis: every ``step``, the last one flush with the end."""
    if tile == 0 or length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def tile_windows(shape: Sequence[int], config: TileConfig) -> list[Window]:
    """Overlapping windows covering an image of ``shape`` (H, W[, C]), row by row.

    Windows have the tile size (or the image size along an axis that fits in
    one tile); the last window of a row or column is flush with the image edge.

    >>> tile_windows((10, 700), TileConfig(tile=512, overlap=128))
    [(0, 0, 10, 512), (0, 188, 10, 700)]
    >>> tile_windows((100, 100), TileConfig(tile=0))
    [(0, 0, 100, 100)]
    """
    h, w = int(shape[0]), int(shape[1])
    ys = _starts(h, config.tile, config.step)
    xs = _starts(w, config.tile, config.step)
    th = h if len(ys) == 1 else config.tile
    tw = w if len(xs) == 1 else config.tile
    return [(y, x, y + th, x + tw) for y in ys for x in xs]


def _cores(starts: list[int], size: int, length: int) -> list[tuple[int, int]]:
    """Split each overlap at its middle: the part of the axis each window owns."""
    bounds = [0]
    for a, b in zip(starts[:-1], starts[1:]):
        bounds.append((b + a + size) // 2)  # middle of [b, a + size)
    bounds.append(length)
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass(frozen=True, eq=False)
class _Candidate:
    inst: Instance  # in full-image coordinates
    tile: int
    order: int  # index within the tile's output
    window: Window
    clean: bool
    in_core: bool


def predict_tiled(
    predict_tile: Callable[[np.ndarray], InstanceSet],
    image: np.ndarray,
    config: TileConfig,
    *,
    progress: Callable | None = None,
) -> InstanceSet:
    """Run ``predict_tile`` on overlapping tiles of ``image`` and stitch the instances.

    ``image`` is H x W or H x W x C: an array, or anything with ``shape`` and
    ``ndim`` that gives a window's pixels when sliced (an
    :class:`~cellbench.data.image_file.ImageFile`, read tile by tile). Instances keep their score and class id
    and come back in full-image coordinates, ordered by tile then by the
    predictor's order. ``progress`` is a tqdm-like factory wrapping the tiles.

    >>> from cellbench.instances import InstanceSet
    >>> img = np.zeros((40, 40), bool); img[15:25, 14:26] = True
    >>> def threshold(tile):
    ...     return InstanceSet.from_label_image(tile.astype(np.uint8))
    >>> out = predict_tiled(threshold, img, TileConfig(tile=24, overlap=16))
    >>> len(out), out[0].bbox
    (1, (15, 14, 25, 26))
    """
    if not (hasattr(image, "shape") and hasattr(image, "ndim")):
        image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
    h, w = image.shape[:2]
    windows = tile_windows(image.shape, config)
    iterator = windows if progress is None else progress(windows, desc="tiles", unit="tile", leave=False)
    if len(windows) == 1:
        for _ in iterator:  # let the progress bar tick once
            pass
        return _checked(predict_tile(np.asarray(image[0:h, 0:w])), (h, w))

    ys = sorted({win[0] for win in windows})
    xs = sorted({win[1] for win in windows})
    th, tw = windows[0][2] - windows[0][0], windows[0][3] - windows[0][1]
    row_core = dict(zip(ys, _cores(ys, th, h)))
    col_core = dict(zip(xs, _cores(xs, tw, w)))

    classes: tuple[str, ...] | None = None
    candidates: list[_Candidate] = []
    for k, window in enumerate(iterator):
        y0, x0, y1, x1 = window
        found = _checked(predict_tile(np.asarray(image[y0:y1, x0:x1])), (y1 - y0, x1 - x0))
        if classes is None:
            classes = found.classes
        elif found.classes != classes:
            raise DataError(f"tile {window} gave classes {found.classes}, an earlier tile {classes}")
        (cy0, cy1), (cx0, cx1) = row_core[y0], col_core[x0]
        for order, inst in enumerate(found):
            shifted = _shift(inst, y0, x0)
            cy, cx = shifted.centroid
            candidates.append(_Candidate(
                inst=shifted, tile=k, order=order, window=window,
                clean=not _touches_inner_edge(inst, window, (h, w)),
                in_core=cy0 <= cy < cy1 and cx0 <= cx < cx1,
            ))
    kept = _stitch(candidates)
    kept.sort(key=lambda c: (c.tile, c.order))
    return InstanceSet(shape=(h, w), instances=tuple(c.inst for c in kept), classes=classes or ("cell",))


def _checked(found: InstanceSet, shape: tuple[int, int]) -> InstanceSet:
    if not isinstance(found, InstanceSet):
        raise DataError(f"a predictor must return an InstanceSet, got {type(found).__name__}")
    if tuple(found.shape) != tuple(shape):
        raise DataError(f"predictor returned instances of shape {found.shape} for an image of shape {shape}")
    return found


def _shift(inst: Instance, dy: int, dx: int) -> Instance:
    y0, x0, y1, x1 = inst.bbox
    return inst.replace(bbox=(y0 + dy, x0 + dx, y1 + dy, x1 + dx))


def _touches_inner_edge(inst: Instance, window: Window, shape: tuple[int, int]) -> bool:
    """Does the instance (tile coordinates) reach an edge of the tile that is not the image border?"""
    wy0, wx0, wy1, wx1 = window
    th, tw = wy1 - wy0, wx1 - wx0
    y0, x0, y1, x1 = inst.bbox
    return (
        (wy0 > 0 and y0 == 0 and inst.mask[0].any())
        or (wx0 > 0 and x0 == 0 and inst.mask[:, 0].any())
        or (wy1 < shape[0] and y1 == th and inst.mask[-1].any())
        or (wx1 < shape[1] and x1 == tw and inst.mask[:, -1].any())
    )


def _intersection(a: Instance, b: Instance) -> int:
    y0, x0 = max(a.bbox[0], b.bbox[0]), max(a.bbox[1], b.bbox[1])
    y1, x1 = min(a.bbox[2], b.bbox[2]), min(a.bbox[3], b.bbox[3])
    if y0 >= y1 or x0 >= x1:
        return 0
    ma = a.mask[y0 - a.bbox[0]:y1 - a.bbox[0], x0 - a.bbox[1]:x1 - a.bbox[1]]
    mb = b.mask[y0 - b.bbox[0]:y1 - b.bbox[0], x0 - b.bbox[1]:x1 - b.bbox[1]]
    return int(np.count_nonzero(ma & mb))


def _restricted(inst: Instance, window: Window) -> Instance | None:
    """The part of ``inst`` inside ``window`` (None when empty)."""
    y0, x0 = max(inst.bbox[0], window[0]), max(inst.bbox[1], window[1])
    y1, x1 = min(inst.bbox[2], window[2]), min(inst.bbox[3], window[3])
    if y0 >= y1 or x0 >= x1:
        return None
    crop = inst.mask[y0 - inst.bbox[0]:y1 - inst.bbox[0], x0 - inst.bbox[1]:x1 - inst.bbox[1]]
    if not crop.any():
        return None
    return Instance.from_mask(crop, offset=(y0, x0))


def _agree_on_shared(a: _Candidate, b: _Candidate) -> bool:
    """Do two cut pieces show the same cell where both tiles looked?"""
    shared = (max(a.window[0], b.window[0]), max(a.window[1], b.window[1]),
              min(a.window[2], b.window[2]), min(a.window[3], b.window[3]))
    pa, pb = _restricted(a.inst, shared), _restricted(b.inst, shared)
    if pa is None or pb is None:
        return False
    inter = _intersection(pa, pb)
    return inter > _SAME_CELL * (pa.area + pb.area - inter)


def _union(a: Instance, b: Instance) -> Instance:
    y0, x0 = min(a.bbox[0], b.bbox[0]), min(a.bbox[1], b.bbox[1])
    y1, x1 = max(a.bbox[2], b.bbox[2]), max(a.bbox[3], b.bbox[3])
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for inst in (a, b):
        mask[inst.bbox[0] - y0:inst.bbox[2] - y0, inst.bbox[1] - x0:inst.bbox[3] - x0] |= inst.mask
    bigger = a if a.area >= b.area else b
    scores = [s for s in (a.score, b.score) if s is not None]
    return bigger.replace(mask=mask, bbox=(y0, x0, y1, x1), score=max(scores) if scores else None)


def _stitch(candidates: list[_Candidate]) -> list[_Candidate]:
    """Keep one copy of each cell: clean-in-core first, then clean, then cut (joined when they agree)."""
    rank = sorted(
        range(len(candidates)),
        key=lambda i: (not (candidates[i].clean and candidates[i].in_core), not candidates[i].clean,
                       -candidates[i].inst.area, candidates[i].tile, candidates[i].order),
    )
    kept: list[_Candidate] = []
    index = BoxIndex()
    for i in rank:
        cand = candidates[i]
        duplicate = False
        for j in index.query(cand.inst.bbox):
            other = kept[j]
            if other.tile == cand.tile:
                continue
            if not cand.clean and not other.clean and _agree_on_shared(cand, other):
                joined = _union(other.inst, cand.inst)
                kept[j] = _Candidate(joined, other.tile, other.order, _span(other.window, cand.window),
                                     clean=False, in_core=other.in_core)
                index.update(j, joined.bbox)
                duplicate = True
                break
            inter = _intersection(cand.inst, other.inst)
            if inter > _SAME_CELL * min(cand.inst.area, other.inst.area):
                duplicate = True
                break
        if not duplicate:
            kept.append(cand)
            index.add(cand.inst.bbox)
    return kept


def _span(a: Window, b: Window) -> Window:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
