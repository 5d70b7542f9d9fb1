"""Data efficiency bands over draws, and the figure."""

from __future__ import annotations

import numpy as np
import pytest

from cellbench.analysis import EfficiencyPoint, efficiency_bands, efficiency_figure, efficiency_rows
from cellbench.errors import DataError


def _points():
    pts = [EfficiencyPoint("a", "zero-shot", s, 0, 0, 0.2) for s in range(3)]
    pts += [EfficiencyPoint("a", "five", s, 5, 40 + 10 * s, score) for s, score in enumerate([0.5, 0.7, 0.6])]
    pts += [EfficiencyPoint("a", "one", s, 1, 8 + s, 0.4 + 0.05 * s) for s in range(3)]
    pts += [EfficiencyPoint("b", "one", 0, 1, None, None)]
    return pts


def test_bands_over_draws():
    bands = efficiency_bands(_points())
    assert [(b.method, b.regime) for b in bands] == [("a", "zero-shot"), ("a", "one"), ("a", "five"), ("b", "one")]
    five = bands[2]
    assert (five.n_draws, five.train_images, five.train_cells) == (3, 5.0, 50.0)
    assert five.mean == pytest.approx(0.6) and five.sd == pytest.approx(np.std([0.5, 0.7, 0.6], ddof=1))
    assert (five.low, five.high) == (0.5, 0.7)
    b = bands[3]
    assert b.mean is None and b.sd is None and b.train_cells is None
    assert efficiency_rows(bands)[0]["regime"] == "zero-shot"


def test_single_draw_has_no_sd():
    (band,) = efficiency_bands([EfficiencyPoint("a", "one", 0, 1, 3, 0.5)])
    assert band.sd is None and band.low == band.high == 0.5


def test_figure(tmp_path):
    path = efficiency_figure(_points(), tmp_path / "eff.png", score_label="AP@0.5", title="t")
    assert path.stat().st_size > 1000
    with pytest.raises(DataError):
        efficiency_figure([], tmp_path / "x.png", score_label="s")
