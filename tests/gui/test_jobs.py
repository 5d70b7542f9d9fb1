"""Jobs: a `cellbench train` command in its own process, queued one per slot, stopped and resumed."""

from __future__ import annotations

import time

import pytest

from cellbench.gui.jobs import JobQueue
from cellbench.gui.workspace import Workspace
from cellbench.methods.model_dir import load_model


def _wait(queue, job, states, timeout=180):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        queue.tick()
        if job.state in states:
            return job.state
        time.sleep(0.2)
    raise AssertionError(f"job {job.id} still {job.state}; log:\n{job.log_tail()}")


def test_jobs_queue_stop_resume(tmp_path, three_disks):
    ws = Workspace(tmp_path)
    queue = JobQueue(ws, slots=1)

    def train(name):
        argv = ["train", "watershed", "--data", str(tmp_path / "data"), "--layout", "dsb",
                "--out", str(tmp_path / "models" / name)]
        return queue.submit("train", argv, title=f"train {name}", out=f"models/{name}")

    first = train("a")
    second = train("b")
    assert first.state == "running" and second.state == "queued"  # one job per slot
    queue.stop(first.id)
    assert first.state == "stopped" and not (tmp_path / "models" / "a").exists()
    _wait(queue, second, ("done",))  # the slot went to the queued job
    queue.resume(first.id)
    assert _wait(queue, first, ("done",)) == "done"
    queue.join(60)
    assert first.status["attempt"] == 2 and first.status["returncode"] == 0
    assert "trained watershed on 1 image(s)" in first.log_tail()
    assert load_model(tmp_path / "models" / "a").name == "watershed"
    assert [j.id for j in queue.jobs()] == [first.id, second.id]


def test_worker_imports_no_module_from_the_workspace(tmp_path, three_disks):
    """A tqdm.py, numpy.py or cellbench/ package lying in the workspace is not what the job's worker imports."""
    markers = {name: tmp_path.parent / f"{tmp_path.name}-imported-{name}" for name in ("tqdm", "numpy", "cellbench")}
    for name, marker in markers.items():
        module = tmp_path / (f"{name}/__init__.py" if name == "cellbench" else f"{name}.py")
        module.parent.mkdir(exist_ok=True)
        module.write_text(f"open({str(marker)!r}, 'w').close()\n")
    ws = Workspace(tmp_path)
    queue = JobQueue(ws, slots=1)
    argv = ["train", "watershed", "--data", str(three_disks), "--layout", "dsb",
            "--out", str(tmp_path / "models" / "w")]
    job = queue.submit("train", argv, title="train w", out="models/w")
    assert _wait(queue, job, ("done", "failed")) == "done", job.log_tail()
    queue.join(60)
    assert [name for name, marker in markers.items() if marker.exists()] == []
    assert load_model(tmp_path / "models" / "w").name == "watershed"


@pytest.mark.slow  # two worker processes start torch: about 30 s on 2 loaded cores
def test_resumed_training_job_continues_from_its_last_epoch(tmp_path, three_disks):
    """Stop a unet training job after its first epoch, resume it: no epoch is trained twice, the curve continues."""
    pytest.importorskip("monai")
    ws = Workspace(tmp_path)
    queue = JobQueue(ws, slots=1)
    config = ("channels: [8, 16]\nstrides: [2]\nnum_res_units: 0\nthreads: 1\n"
              "train: {epochs: 12, batch_size: 2, patch_size: 32, steps_per_epoch: 2}\n")
    argv = ["train", "unet", "--data", str(tmp_path / "data"), "--layout", "dsb", "--config", "{job}/unet.yaml",
            "--out", str(tmp_path / "models" / "u")]
    job = queue.submit("train", argv, title="train u", out="models/u", files={"unet.yaml": config})
    checkpoint = tmp_path / "models" / "u.checkpoint" / "train-state.pt"
    end = time.monotonic() + 180
    while not checkpoint.is_file() and job.state == "running" and time.monotonic() < end:
        time.sleep(0.05)
    queue.stop(job.id)
    assert job.state == "stopped", job.log_tail()
    assert checkpoint.is_file() and not (tmp_path / "models" / "u").exists()
    done_before = len(job.losses)
    assert done_before >= 1

    queue.resume(job.id)
    assert job.spec["argv"][-1] == "--resume"
    assert _wait(queue, job, ("done", "failed")) == "done", job.log_tail()
    queue.join(60)
    first_attempt, second_attempt = job.log_tail(10**6).split("--- attempt 2")
    assert "epoch 0 loss" in first_attempt and "epoch 0 loss" not in second_attempt  # not trained again
    assert [r["epoch"] for r in job.losses] == list(range(1, 13))  # the loss curve continued
    assert not checkpoint.parent.exists()
    assert len(load_model(tmp_path / "models" / "u").record["history"]["epochs"]) == 12


def test_a_training_job_gets_its_threads_in_the_config_as_a_user_would_give_them(tmp_path):
    """The slot's share of the cores goes into a torch method's config (recorded in model.json), unless the
    settings or the preset name a count; a method without a threads field gets none."""
    pytest.importorskip("nicegui")
    import yaml

    from cellbench.gui.pages.train import job_config

    queue = JobQueue(Workspace(tmp_path), slots=2)
    n = queue.threads_per_job
    assert n >= 1
    assert yaml.safe_load(job_config("cellseg1", "", preset="cpu", threads=n)) == {"threads": n}
    assert yaml.safe_load(job_config("unet", "train: {epochs: 4}\n", preset=None, threads=n)) == \
        {"train": {"epochs": 4}, "threads": n}
    named = "threads: 0 # torch's default"
    assert job_config("unet", named + "\n", preset=None, threads=n) == named
    assert job_config("watershed", "", preset=None, threads=n) is None
    assert job_config("watershed", "sigmas: [1.0]", preset=None, threads=n) == "sigmas: [1.0]"
    assert job_config("unet", "[1, 2]", preset=None, threads=n) == "[1, 2]"  # for `cellbench train` to refuse
