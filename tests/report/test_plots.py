"""Report figures: PNGs of the expected size, the plotted numbers, and exact outline pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cellbench.instances import Instance, InstanceSet
from cellbench.report import plots
from cellbench.report.plots import (
    GT_COLOR,
    PRED_COLOR,
    context_figure,
    count_bin_plot,
    outline_overlay,
    qualitative_panel,
    training_curves,
)

from .test_tables import _entry, _ev

HISTORY = {"val_metric": "f1@0.5", "epochs": [{"epoch": 0, "loss": 1.0, "val_score": None},
                                              {"epoch": 1, "loss": 0.5, "val_score": 0.7}]}


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture
def evs():
    return [_ev(_entry("cellpose")), _ev(_entry("watershed", regime="zero-shot", train_images=0))]


@pytest.fixture
def captured(monkeypatch):
    """The figures the plot functions draw, kept instead of being written."""
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    return figs


def test_figures_are_pngs_of_the_figure_size_and_leave_no_temporary_file(evs, tmp_path):
    # Figure sizes in inches at 100 dpi.
    assert _png_size(context_figure(evs, tmp_path / "f" / "context.png")) == (1600, 480)
    assert _png_size(count_bin_plot(evs, tmp_path / "f" / "bins.png")) == (700, 420)
    entries = [_entry("cellpose", history=HISTORY), _entry("watershed", history=None)]
    assert _png_size(training_curves(entries, tmp_path / "f" / "training.png")) == (700, 420)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["bins.png", "context.png", "training.png"]


def test_no_training_history_no_figure(tmp_path):
    assert training_curves([_entry(history=None), _entry(history={"epochs": []})], tmp_path / "t.png") is None
    assert not (tmp_path / "t.png").exists()


def test_context_figure_plots_the_recorded_numbers(evs, captured, tmp_path):
    context_figure(evs, tmp_path / "c.png", threshold=0.5)
    bars, lines, bins = captured[0].axes[:3]
    # Four bars per model: F1, Dice, precision, recall of the per-image means at IoU 0.5.
    heights = [p.get_height() for p in bars.patches]
    assert heights == pytest.approx([0.4125, 0.4125, 0.65, 0.65, 0.5, 0.5, 0.45, 0.45])
    assert [t.get_text() for t in bars.get_xticklabels()] == ["cellpose (fine-tuned)", "watershed (zero-shot)"]
    x, y = lines.lines[0].get_data()
    assert list(x) == [0.5, 0.7, 0.75, 0.9]  # the evaluation's thresholds; 0.75 has no per-image mean
    np.testing.assert_array_equal(y, [0.4125, 0.3, np.nan, 0.05])
    # Mean per-image F1 by GT count: 6-10 {0.2, 0.9}, 11-20 {0.5}, 21-50 {0.6}, 51-100 {0.7}, 100+ {0.1}.
    assert [p.get_height() for p in bins.patches[:5]] == pytest.approx([0.55, 0.5, 0.6, 0.7, 0.1])
    assert "dataset glioma, task cells, split test" in captured[0].get_suptitle()


def test_training_curves_draw_loss_and_validation(captured, tmp_path):
    training_curves([_entry(history=HISTORY)], tmp_path / "t.png")
    loss_ax, val_ax = captured[0].axes
    assert [list(v) for v in loss_ax.lines[0].get_data()] == [[0, 1], [1.0, 0.5]]
    assert [list(v) for v in val_ax.lines[0].get_data()] == [[1], [0.7]]  # epochs without a score are left out
    assert val_ax.lines[0].get_linestyle() == "--" and "f1@0.5" in val_ax.get_ylabel()


def _square(y0: int, x0: int, side: int) -> Instance:
    return Instance(np.ones((side, side), bool), (y0, x0, y0 + side, x0 + side))


def test_outline_overlay_pixels():
    image = np.zeros((10, 10), np.uint16)
    gt = InstanceSet((10, 10), (_square(2, 2, 4),))  # rows / columns 2..5
    pred = InstanceSet((10, 10), (_square(4, 4, 4),))  # rows / columns 4..7
    rgb = outline_overlay(image, gt, pred)
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[2, 2]) == GT_COLOR and tuple(rgb[7, 7]) == PRED_COLOR
    assert tuple(rgb[5, 4]) == PRED_COLOR  # on both borders: the prediction is drawn on top
    assert tuple(rgb[5, 5]) == GT_COLOR  # GT border inside the prediction stays visible
    assert tuple(rgb[3, 3]) == (0, 0, 0) and tuple(rgb[0, 9]) == (0, 0, 0)
    painted = np.any(rgb != 0, axis=-1)
    assert np.count_nonzero(painted) == 12 + 12 - 2  # two 4 x 4 borders crossing at two pixels
    # A window shows the same pixels, shifted.
    window = (slice(3, 10), slice(4, 10))
    np.testing.assert_array_equal(outline_overlay(image, gt, pred, window=window), rgb[window])
    assert not np.any(outline_overlay(image, None, None))


def test_qualitative_panel_size_and_crop(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.random((40, 50))
    small = rng.random((12, 12))
    gt = InstanceSet((40, 50), (_square(18, 22, 5),))
    rows = [("big", big, gt, [("a", gt, 1.0), ("b", InstanceSet((40, 50), ()), None)]),
            ("small", small, InstanceSet((12, 12), ()), [("a", InstanceSet((12, 12), ()), 0.0)])]
    path = qualitative_panel(rows, tmp_path / "q.png", title="setting", crop=16)
    assert _png_size(path) == (int(2.6 * 4 * 100), int((2.8 * 2 + 0.4) * 100))


def test_qualitative_panel_titles_and_centred_crop(captured, tmp_path):
    gt = InstanceSet((40, 50), (_square(18, 22, 5),))
    rows = [("big", np.random.default_rng(0).random((40, 50)), gt, [("a", gt, 0.98765), ("b", gt, None)])]
    qualitative_panel(rows, tmp_path / "q.png", title="setting", crop=16)
    axes = captured[0].axes
    assert [ax.get_title() for ax in axes] == ["big", "ground truth (light blue)", "a\nF1 0.988 (red)",
                                              "b\nF1 n/a (red)"]
    shown = axes[1].get_images()[0].get_array()
    assert shown.shape == (16, 16, 3)  # centred window rows 12..27, columns 17..32
    np.testing.assert_array_equal(shown, outline_overlay(rows[0][1], gt, None)[12:28, 17:33])
