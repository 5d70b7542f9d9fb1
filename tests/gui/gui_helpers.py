"""Helpers of the GUI tests (imported by conftest and the tests; this folder is on sys.path)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dsb_image() -> tuple[np.ndarray, np.ndarray]:
    stardist_data = pytest.importorskip("stardist.data", reason="the DSB2018 demo image ships in stardist")
    return stardist_data.test_image_nuclei_2d(return_mask=True)


def make_workspace(root: Path) -> Path:
    """dsb2018/{images,masks}/nuclei.tif (the whole demo image, layout dsb) and dsb-crop/crop.tif (256 px)."""
    image, labels = dsb_image()
    for sub, arr in (("images", image), ("masks", labels)):
        (root / "dsb2018" / sub).mkdir(parents=True)
        tifffile.imwrite(root / "dsb2018" / sub / "nuclei.tif", arr)
    (root / "dsb-crop").mkdir()
    tifffile.imwrite(root / "dsb-crop" / "crop.tif", image[128:384, 128:384])
    return root


class GuiServer:
    """`cellbench gui` in a subprocess; ``url`` is the line it printed."""

    def __init__(self, workspace: Path, *args: str) -> None:
        self.workspace = workspace
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cellbench", "gui", "--workspace", str(workspace), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"})  # NiceGUI's own test mode
        self.lines: list[str] = []
        self.url: str | None = None
        found = threading.Event()

        def read() -> None:
            for line in self.process.stdout:
                self.lines.append(line)
                match = re.match(r"cellbench gui: (http://\S+)", line)
                if match and self.url is None:
                    self.url = match.group(1)
                    found.set()
            found.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        found.wait(180)
        if self.url is None:
            self.stop()
            raise RuntimeError("cellbench gui printed no URL:\n" + "".join(self.lines))

    @property
    def base(self) -> str:
        return self.url.split("?")[0].rstrip("/")

    @property
    def token(self) -> str | None:
        match = re.search(r"token=([\w-]+)", self.url)
        return match.group(1) if match else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(10)
        self.process.stdout.close()


def choose(page, testid: str, option: str) -> None:
    """Pick ``option`` in the Quasar select with ``data-testid=testid``."""
    page.get_by_test_id(testid).click()
    page.get_by_role("option", name=option, exact=True).click()


def coloured_pixels(png: bytes) -> int:
    """Pixels of a screenshot that are clearly coloured (|channel spread| > 60): outlines over a grey image."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 60).sum())


def screenshot_dir() -> Path | None:
    """Where to keep page screenshots for the README (``CELLBENCH_GUI_SCREENSHOTS``), if anywhere."""
    folder = os.environ.get("CELLBENCH_GUI_SCREENSHOTS")
    return Path(folder) if folder else None


def write_dsb_halves(root: Path) -> Path:
    """The demo's DSB2018 split: train/ (left half) and test/ (right half), layout dsb."""
    image, labels = dsb_image()
    w = labels.shape[1]
    for split, cols in (("train", slice(0, w // 2)), ("test", slice(w // 2, w))):
        for sub, arr in (("images", image), ("masks", labels)):
            (root / split / sub).mkdir(parents=True)
            tifffile.imwrite(root / split / sub / "half.tif", arr[:, cols])
    return root


def run_watershed_experiment(workspace: Path) -> Path:
    """`cellbench run` of watershed zero-shot and fine-tuned on the DSB halves: ``runs/dsb`` in the workspace."""
    import yaml

    data = write_dsb_halves(workspace / "dsb-halves")
    experiment = {
        "name": "gui-compare", "seeds": [0],
        "datasets": {"dsb2018": {"layout": "dsb", "path": str(data), "train": "train", "test": ["test"]}},
        "methods": {"watershed": {"method": "watershed"}},
        "regimes": {"zero-shot": {"train_images": 0}, "fine-tuned": {"train_images": "all"}},
        "evaluation": {"thresholds": [0.5, 0.75], "ground_truth": ["overlap"]},
    }
    path = workspace / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    out = workspace / "runs" / "dsb"
    subprocess.run([sys.executable, "-m", "cellbench", "run", str(path), "--out", str(out)], check=True,
                   capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"})
    return out


def crop_cells(n: int = 3) -> list[tuple[float, float, float]]:
    """(x, y, radius) of ``n`` whole nuclei of the 256 px crop, well inside it and apart from each other."""
    from cellbench.instances import InstanceSet

    labels = dsb_image()[1][128:384, 128:384]
    chosen: list[tuple[float, float, float]] = []
    for inst in InstanceSet.from_label_image(labels):
        y0, x0, y1, x1 = inst.bbox
        if inst.area < 250 or min(y0, x0) < 20 or max(y1, x1) > 236:
            continue
        cy, cx = inst.centroid
        if all((cx - x) ** 2 + (cy - y) ** 2 > 60 ** 2 for x, y, _ in chosen):
            chosen.append((cx + 0.5, cy + 0.5, float(np.sqrt(inst.area / np.pi))))
        if len(chosen) == n:
            return chosen
    raise AssertionError("the crop holds too few whole nuclei")
