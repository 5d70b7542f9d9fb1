"""Draw docs/demo/synthetic_glioma.png: a synthetic Glioma C6 image of the demo, bare and with its annotations.

Run from the repository root: ``.venv/bin/python docs/demo/synthetic_glioma.py``. The image is the demo's
first test image (spec) and its first gen image, made with the demo's settings (``DEMO_GLIOMA``, seed 0);
outlines as in the paper's Figure 1: type A blue, type B yellow, somata red.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cellbench.cli.demo import DEMO_GLIOMA
from cellbench.data import read_dataset
from cellbench.data.synth import synth_glioma_c6
from cellbench.figures import new_figure, save_figure

OUT = Path(__file__).with_name("synthetic_glioma.png")
COLOURS = {"cell_type_a": "tab:blue", "cell_type_b": "gold", "soma": "tab:red", "cell": "gold"}


def _panel(ax, sample, *, outlines: bool, title: str) -> None:
    image = sample.load_image()
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    if outlines:
        classes = sample.instances.classes
        for inst in sample.instances:
            full = np.zeros(image.shape[:2], bool)
            full[inst.slices] = inst.mask
            ax.contour(full, levels=[0.5], colors=[COLOURS.get(classes[inst.class_id], "white")], linewidths=0.6)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        synth_glioma_c6(tmp, seed=0, overwrite=True, **{**DEMO_GLIOMA, "images_per_split": {"test": 1, "gen": 1}})
        spec = read_dataset(tmp, "glioma-c6", split="test").samples[0]
        gen = read_dataset(tmp, "glioma-c6", split="gen").samples[0]
        fig = new_figure(10, 7.8)
        axes = fig.subplots(2, 2)
        _panel(axes[0, 0], spec, outlines=False, title="spec test image (as the demo makes it)")
        _panel(axes[0, 1], spec, outlines=True, title="annotations: type A blue, type B yellow, somata red")
        _panel(axes[1, 0], gen, outlines=False, title="gen image: its own contrast, noise and magnification")
        _panel(axes[1, 1], gen, outlines=True, title="gen annotations: cells, untyped")
        save_figure(fig, OUT)
    print(OUT)


if __name__ == "__main__":
    main()
