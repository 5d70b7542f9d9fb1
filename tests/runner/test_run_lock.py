"""Two `cellbench run` on one run folder: the second is refused while the first writes; a killed one leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import yaml
from runner_helpers import experiment_dict

from cellbench.cli.main import main


def test_a_second_run_on_the_same_folder_is_refused_until_the_first_dies(tmp_path, tiny_data, fake_methods_path,
                                                                        capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment_dict(tiny_data, sleep_s=0.4), sort_keys=False))
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "cellbench", "run", str(exp), "--out", str(run), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (run / "results.sqlite").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, "the first run ended before the second started"
        assert main(["run", str(exp), "--out", str(run), "--resume", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{run}: another cellbench process is writing this run folder (pid {first.pid}," in err
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert main(["run", str(exp), "--out", str(run), "--resume", "--quiet"]) == 0  # no stale lock
