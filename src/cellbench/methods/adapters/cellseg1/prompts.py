"""Prompts: the interior points CellSeg1 trains on, and how the point grid prompts SAM (points or boxes).

CellSeg1 samples its point prompts from the distance transforms of the
foreground and of the background, among the most interior 20 % of pixels,
so a point never sits on an ambiguous boundary. Each positive point comes
with the mask of its cell; cells smaller than 100 px give no point.

At prediction, :class:`GridPrompts` says how the grid's points reach the
decoder (as points, or as boxes of a half side in image pixels) for both grid
methods, ``sam`` and CellSeg1. Nothing here needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from cellbench.methods.tiling import TileConfig

__all__ = ["GridPrompts", "PointSample", "sample_points"]


class GridPrompts:
    """The prompt kind and box size of a method that runs the point grid, mixed into its class (``sam``, CellSeg1).

    It reads the method's ``config`` (``prompt``: auto / point / box, ``backbone``,
    ``box_half_side``), its :attr:`~cellbench.methods.base.Method.prediction_tiling`
    and ``_measured_half_side``, the box half side measured on its training cells (None
    before training).
    """

    config: Any
    prediction_tiling: TileConfig
    _measured_half_side: float | None

    @property
    def prompt(self) -> str:
        """``"point"`` or ``"box"``: how prompt points reach the decoder (``auto``: boxes for LiteMedSAM, points
        for the SAM ViTs)."""
        if self.config.prompt != "auto":
            return self.config.prompt
        return "box" if self.config.backbone == "litemedsam" else "point"

    @property
    def box_half_side(self) -> float | None:
        """Half side of box prompts in image pixels (None for point prompts).

        The config value, else the one measured on the training cells, else a
        tenth of the tile (a model that was never trained).
        """
        return self._box_half_side(None)

    def _box_half_side(self, tiling: TileConfig | None) -> float | None:
        """:attr:`box_half_side` with a tenth of ``tiling``'s tile as the last resort (None: the model's tiling)."""
        if self.prompt == "point":
            return None
        return self.config.box_half_side or self._measured_half_side or (tiling or self.prediction_tiling).tile / 10


@dataclass(frozen=True, eq=False)
class PointSample:
    """Point prompts of one training image.

    Attributes:
        points: N x 2 ``(x, y)`` pixel coordinates (pixel centres).
        positive: N booleans, True for a point inside a cell.
        label_ids: N label values of the cell under each positive point (0 for negatives).
    """

    points: np.ndarray
    positive: np.ndarray
    label_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def _interior(distance: np.ndarray, region: np.ndarray, top_fraction: float) -> np.ndarray:
    """Flat indices of the ``top_fraction`` most interior pixels of ``region`` (at least one)."""
    flat = np.flatnonzero(region)
    if flat.size == 0:
        return flat
    values = distance.ravel()[flat]
    keep = max(1, int(np.ceil(top_fraction * flat.size)))
    order = np.argsort(-values, kind="stable")[:keep]
    return flat[np.sort(order)]


def sample_points(
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    max_positive: int = 30,
    max_negative: int = 15,
    top_fraction: float = 0.2,
    min_cell_area: int = 100,
) -> PointSample:
    """Sample up to ``max_positive`` cell points (one per cell) and ``max_negative`` background points.

    A positive point is drawn, for a random choice of cells of at least
    ``min_cell_area`` pixels, among the ``top_fraction`` of the cell's pixels
    farthest from its boundary. Negative points are drawn among the
    ``top_fraction`` of background pixels farthest from any cell (small cells
    count as foreground there too).

    >>> labels = np.zeros((40, 40), np.int32); labels[5:20, 5:20] = 1; labels[25:35, 25:35] = 2
    >>> s = sample_points(labels, np.random.default_rng(0), max_negative=2)
    >>> s.label_ids.tolist(), int(s.positive.sum()), len(s)
    ([1, 2, 0, 0], 2, 4)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    h, w = labels.shape
    points, positive, ids = [], [], []

    found = ndimage.find_objects(labels.astype(np.int64, copy=False))
    cells = []
    for k, sl in enumerate(found):
        if sl is None:
            continue
        if np.count_nonzero(labels[sl] == k + 1) >= min_cell_area:
            cells.append((k + 1, sl))
    if cells and max_positive > 0:
        chosen = rng.choice(len(cells), size=min(max_positive, len(cells)), replace=False)
        for c in np.sort(chosen):
            label, sl = cells[c]
            # pad by one so a cell touching the crop edge is still measured from its edge inside
            crop = np.pad(labels[sl] == label, 1)
            dist = ndimage.distance_transform_edt(crop)[1:-1, 1:-1]
            region = crop[1:-1, 1:-1]
            candidates = _interior(dist, region, top_fraction)
            pick = candidates[rng.integers(candidates.size)]
            r, c_ = np.unravel_index(pick, region.shape)
            points.append((c_ + sl[1].start, r + sl[0].start))
            positive.append(True)
            ids.append(label)

    background = labels == 0
    if max_negative > 0 and background.any():
        if background.all():
            dist = np.ones(labels.shape)
        else:
            dist = ndimage.distance_transform_edt(background)
        candidates = _interior(dist, background, top_fraction)
        picks = rng.choice(candidates, size=min(max_negative, candidates.size), replace=False)
        for pick in np.sort(picks):
            r, c_ = divmod(int(pick), w)
            points.append((c_, r))
            positive.append(False)
            ids.append(0)

    return PointSample(
        points=np.asarray(points, dtype=np.float64).reshape(-1, 2),
        positive=np.asarray(positive, dtype=bool),
        label_ids=np.asarray(ids, dtype=np.int64),
    )
