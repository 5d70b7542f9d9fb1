"""SIGKILL during `data convert`, `predict`, `train` and `report` leaves no partial output.

Each command runs in a child process that pauses after every file it writes
(a wrapper slows one function: tifffile's writer, watershed's weight writer,
the report's figure writer; the all-or-nothing machinery itself is left as
is), so that the kill lands while the output is being written. After the
kill the output folder either does not exist or is complete; the hidden
partial folder the killed process leaves beside it is removed by the next
run of the command, which then succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

from runner_helpers import experiment_dict, write_tiny_dsb  # noqa: E402

from cellbench.cli.main import main  # noqa: E402

FAST = "sigmas: [1.0]\nthreshold_scales: [1.0]\ndistance_sigmas: [1.0]\nmin_distance_fractions: [0.5]\n"

SLOWED_MAIN = """
import functools, importlib, sys, time
from cellbench.cli.main import main
target, pause = sys.argv[1], float(sys.argv[2])
module, _, attr = target.partition(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
real = getattr(owner, name)

@functools.wraps(real)
def slowed(*args, **kwargs):
    result = real(*args, **kwargs)
    time.sleep(pause)
    return result

setattr(owner, name, slowed)
sys.exit(main(sys.argv[3:]))
"""

MOMENTS = [0.0, 0.25]  # seconds after the first partial output appears


def _partials(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*"))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _kill_while_writing(argv: list[str], out: Path, slow: str, pause: float, delay: float) -> None:
    """Run ``cellbench argv`` with ``slow`` pausing, SIGKILL it ``delay`` s after its partial output appears."""
    with subprocess.Popen([sys.executable, "-c", SLOWED_MAIN, slow, str(pause), *argv],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(RUNNER_TESTS)}) as proc:
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and not _partials(out) and time.monotonic() < deadline:
                time.sleep(0.005)
            if not _partials(out):
                proc.kill()
                pytest.fail(f"the command never started writing: exit {proc.wait()}: {proc.stderr.read()}")
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the command finished before the kill"


def _check_kill_then_rerun(argv: list[str], out: Path, slow: str, pause: float, delay: float, reference: Path):
    _kill_while_writing(argv, out, slow, pause, delay)
    if out.exists():  # killed after the output got its name: it must be whole
        assert _files(out) == _files(reference)
    else:  # killed while writing: only the hidden partial folder is left
        assert [p.name.split(".partial-")[0] for p in _partials(out)] == [f".{out.name}"]
    assert main([*argv, "--overwrite"]) == 0  # the next run ignores and removes what the killed one left
    assert _partials(out) == []
    assert _files(out) == _files(reference)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """20 images of 64 x 64 with disks, in the dsb layout (train/ and test/), and a fast watershed config."""
    root = tmp_path_factory.mktemp("kill")
    yy, xx = np.mgrid[:64, :64]
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for sub in ("images", "masks"):
            (root / "dsb" / split / sub).mkdir(parents=True)
        for k in range(20 if split == "test" else 2):
            labels = np.zeros((64, 64), np.uint16)
            for j, (cy, cx) in enumerate([(14, 14), (14, 46), (46, 14), (46, 46)]):
                labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(5, 8) ** 2] = j + 1
            image = (40 + 140 * (labels > 0) + rng.normal(0, 8, labels.shape)).clip(0, 255).astype(np.uint8)
            tifffile.imwrite(root / "dsb" / split / "images" / f"im{k:02d}.tif", image)
            tifffile.imwrite(root / "dsb" / split / "masks" / f"im{k:02d}.tif", labels)
    (root / "fast.yaml").write_text(FAST + "tiling: {tile: 0, overlap: 0}\n")
    train = ["train", "watershed", "--data", str(root / "dsb"), "--layout", "dsb", "--split", "train",
             "--config", str(root / "fast.yaml"), "--out", str(root / "model")]
    assert main(train) == 0
    return root


@pytest.mark.parametrize("delay", MOMENTS)
def test_sigkill_during_data_convert(data, tmp_path, delay):
    argv = ["data", "convert", str(data / "dsb"), "--layout", "dsb", "--split", "test", "--to", "labels"]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    _check_kill_then_rerun([*argv, "--out", str(tmp_path / "out")], tmp_path / "out", "tifffile:imwrite", 0.05,
                           delay, tmp_path / "reference")


@pytest.mark.parametrize("delay", MOMENTS)
def test_sigkill_during_predict(data, tmp_path, delay):
    argv = ["predict", str(data / "model"), "--images", str(data / "dsb" / "test" / "images")]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    _check_kill_then_rerun([*argv, "--out", str(tmp_path / "out")], tmp_path / "out", "tifffile:imwrite", 0.05,
                           delay, tmp_path / "reference")


@pytest.mark.parametrize("delay", MOMENTS)
def test_sigkill_during_train(data, tmp_path, delay):
    argv = ["train", "watershed", "--data", str(data / "dsb"), "--layout", "dsb", "--split", "train",
            "--config", str(data / "fast.yaml")]
    _check_kill_then_rerun([*argv, "--out", str(tmp_path / "out")], tmp_path / "out",
                           "cellbench.methods.adapters.watershed:WatershedMethod.save_weights", 1.0, delay, data / "model")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder of the tiny grid, and its report (``run/report``) made without a kill."""
    tmp = tmp_path_factory.mktemp("kill-report")
    exp = tmp / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment_dict(write_tiny_dsb(tmp / "data")), sort_keys=False))
    assert main(["run", str(exp), "--out", str(tmp / "run"), "--quiet"]) == 0
    assert main(["report", str(tmp / "run"), "--images", "1"]) == 0
    return tmp / "run"


@pytest.mark.parametrize("delay", MOMENTS)
def test_sigkill_during_report(run_dir, tmp_path, delay):
    argv = ["report", str(run_dir), "--images", "1"]
    _check_kill_then_rerun([*argv, "--out", str(tmp_path / "out")], tmp_path / "out",
                           "cellbench.report.plots:save_figure", 0.2, delay, run_dir / "report")
