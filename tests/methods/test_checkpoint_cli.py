"""`cellbench train --resume`: SIGKILL after a finished epoch, then resume to the weights of an uninterrupted run.

The killed command runs in a child process whose per-epoch checkpoint write is
followed by a pause (a wrapper around ``EpochCheckpoint.save``; what is saved
is unchanged), so the kill lands between epochs with a checkpoint on disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cellbench.cli.main import main
from cellbench.methods.checkpoint import CHECKPOINT_FILE, checkpoint_folder
from cellbench.methods.model_dir import load_model

pytest.importorskip("torch")
pytest.importorskip("monai")

CONFIG = {"channels": [4, 8], "strides": [2], "num_res_units": 0, "threads": 1,
          "train": {"epochs": 4, "batch_size": 1, "patch_size": 32, "steps_per_epoch": 2, "lr": 0.01}}

SLOWED_SAVE = """
import sys, time
from cellbench.cli.main import main
from cellbench.methods.checkpoint import EpochCheckpoint
real = EpochCheckpoint.save
def save(self, *args, **kwargs):
    real(self, *args, **kwargs)
    time.sleep(30)  # killed here, after the first epoch's checkpoint
EpochCheckpoint.save = save
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def dsb(tmp_path, three_disks) -> Path:
    (tmp_path / "unet.yaml").write_text(yaml.safe_dump(CONFIG))
    return tmp_path


def _argv(root: Path, out: Path) -> list[str]:
    return ["train", "unet", "--data", str(root / "data"), "--layout", "dsb", "--config", str(root / "unet.yaml"),
            "--out", str(out)]


def _weights(model_dir: Path) -> dict:
    import torch

    return torch.load(model_dir / "weights" / "unet.pt", weights_only=True)


@pytest.mark.slow  # two processes start torch: about 20 s on 2 loaded cores
def test_sigkill_then_resume_finishes_with_the_uninterrupted_weights(dsb, capsys):
    import torch

    assert main(_argv(dsb, dsb / "straight")) == 0
    assert not checkpoint_folder(dsb / "straight").exists()  # removed once the model directory is written

    out = dsb / "killed"
    state = checkpoint_folder(out) / CHECKPOINT_FILE
    with subprocess.Popen([sys.executable, "-c", SLOWED_SAVE, *_argv(dsb, out)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}) as proc:
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and not state.is_file() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert state.is_file(), f"no checkpoint appeared: exit {proc.poll()}: {proc.stderr.read()}"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # the model directory is all or nothing

    capsys.readouterr()
    assert main(_argv(dsb, out)) == 2  # a leftover checkpoint: say what to do
    assert "--resume" in capsys.readouterr().err

    assert main([*_argv(dsb, out), "--resume"]) == 0
    assert not checkpoint_folder(out).exists()
    model = load_model(out)
    assert [e["epoch"] for e in model.record["history"]["epochs"]] == [0, 1, 2, 3]
    straight, resumed = _weights(dsb / "straight"), _weights(out)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


class Stop(BaseException):
    """Ends the command right after its first checkpoint, as a stop between epochs would."""


def test_resume_refuses_another_config_and_overwrite_starts_again(dsb, capsys, monkeypatch):
    from cellbench.methods.checkpoint import EpochCheckpoint

    out = dsb / "model"
    real = EpochCheckpoint.save

    def save_then_stop(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise Stop

    monkeypatch.setattr(EpochCheckpoint, "save", save_then_stop)
    with pytest.raises(Stop):
        main(_argv(dsb, out))
    monkeypatch.setattr(EpochCheckpoint, "save", real)
    folder = checkpoint_folder(out)
    assert (folder / CHECKPOINT_FILE).is_file() and not out.exists()

    (dsb / "unet.yaml").write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "lr": 0.5}}))
    capsys.readouterr()
    assert main([*_argv(dsb, out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "config.train.lr: 0.01 -> 0.5" in err and CHECKPOINT_FILE in err
    assert (folder / CHECKPOINT_FILE).is_file() and not out.exists()  # a refused resume deletes nothing
    assert main([*_argv(dsb, out), "--overwrite"]) == 0  # --overwrite starts again
    assert not folder.exists() and load_model(out).name == "unet"
