"""Long GUI work (training, prediction) as jobs: a folder each, a worker process each, a queue.

A job is a ``cellbench`` command line (``train ...`` or ``predict ...``) run by
:mod:`cellbench.gui.worker` in its own process session, so it keeps running when
the browser closes (and when the GUI server stops). Its folder
``<workspace>/jobs/<id>/`` holds everything about it, written atomically:

* ``job.json``: the command line, kind, title, output path, slot size;
* ``status.json``: ``queued`` / ``running`` / ``done`` / ``failed`` / ``stopped``, pid, times, exit code;
* ``progress.json``: the command's progress bars (what the CLI draws with tqdm), fraction done, ETA;
* ``loss.json``: the training loss per epoch, as the method logs it (kept across a resume);
* ``log.txt``: everything the command printed.

:class:`JobQueue` starts queued jobs in creation order while fewer than ``slots``
run: one job per CPU slot, :attr:`JobQueue.threads_per_job` (``os.cpu_count() / slots``)
cores each. ``stop`` ends a job's whole process group;
``resume`` queues a stopped or failed job again. A training job is resumed
with ``cellbench train ... --resume``: the methods whose training loop
cellbench owns (``resumable`` in ``cellbench methods``) saved their whole state
after every epoch in ``<out>.checkpoint/`` and continue from the last finished
epoch (same weights as an uninterrupted training); the progress bar and the loss
curve continue from there. The others train again from the start.

Thread counts, one rule: a torch method's train and predict run on its config's
``threads`` (:func:`cellbench.methods.device.on_config_threads`), whatever starts
them. The GUI gives a training job its slot's share the way a user does, as
``threads`` in the job's config file (:func:`cellbench.gui.pages.train.job_config`,
unless the user's settings or the preset name a count), so the model directory
records the count its weights were computed with and ``cellbench train`` with
that config gives the same weights; a prediction job runs on the count its model
recorded. The thread variables of the job's environment (:data:`THREAD_VARIABLES`,
the same share) are for what has no ``threads`` field: numpy's and scipy's BLAS,
TensorFlow (StarDist), Ultralytics (YOLO), and torch's own default, which a config
with ``threads: 0`` asks for. They never change a count a config names.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cellbench.errors import DataError
from cellbench.files import atomic_write_bytes
from cellbench.gui.workspace import Workspace, safe_name

__all__ = ["Job", "JobQueue", "STATES", "read_json", "worker_command", "write_json"]

STATES = ("queued", "running", "done", "failed", "stopped")
#: Set to :attr:`JobQueue.threads_per_job` in every job's environment: the libraries without a ``threads``
#: config field, and torch's default for ``threads: 0`` (see the module docstring).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path, default=None):
    """The JSON in ``path``, or ``default`` when the file is missing or half-written."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, value) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1).encode())


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (finished, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Job:
    """One job folder, read fresh on every access (the worker writes it from another process)."""

    folder: Path

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def spec(self) -> dict:
        return read_json(self.folder / "job.json", {})

    @property
    def status(self) -> dict:
        return read_json(self.folder / "status.json", {"state": "queued"})

    @property
    def state(self) -> str:
        return self.status.get("state", "queued")

    @property
    def progress(self) -> dict:
        return read_json(self.folder / "progress.json", {})

    @property
    def losses(self) -> list[dict]:
        return read_json(self.folder / "loss.json", [])

    def log_tail(self, n_chars: int = 20000) -> str:
        try:
            with open(self.folder / "log.txt", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - n_chars))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def set_status(self, **changes) -> None:
        write_json(self.folder / "status.json", {**self.status, **changes})


def worker_command(folder: Path) -> list[str]:
    """The command line of a job's worker process, which imports no module from its working folder.

    ``python -m`` puts the working folder first on ``sys.path``, so a ``tqdm.py`` or ``numpy.py``
    lying there would be imported in place of the real one: from Python 3.11, ``-P`` leaves it off;
    on 3.10 the worker runs in its job folder, which holds only what the GUI writes.
    """
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", "cellbench.gui.worker", str(folder)]


class JobQueue:
    """The jobs of a workspace and the scheduler that starts them (call :meth:`tick` every second or so)."""

    def __init__(self, workspace: Workspace, *, slots: int = 1) -> None:
        if slots < 1:
            raise DataError(f"slots must be at least 1, got {slots}")
        self.workspace = workspace
        self.slots = slots
        self.root = workspace.folder("jobs")
        self._processes: dict[str, subprocess.Popen] = {}

    def jobs(self) -> list[Job]:
        """All jobs, oldest first."""
        return [Job(p) for p in sorted(self.root.iterdir()) if p.is_dir() and (p / "job.json").is_file()]

    def get(self, job_id: str) -> Job:
        job = Job(self.root / safe_name(job_id, "job id"))
        if not (job.folder / "job.json").is_file():
            raise DataError("no such job", path=job_id)
        return job

    def submit(self, kind: str, argv: list[str], *, title: str, out: str | None = None,
               files: dict[str, str] | None = None) -> Job:
        """Queue ``cellbench *argv``; ``files`` (name -> text) are written into the job folder first
        (a config file, say: ``{job}`` in ``argv`` stands for the job folder)."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        n = len(list(self.root.iterdir())) + 1
        folder = self.root / f"{stamp}-{n:03d}-{safe_name(kind, 'job kind')}"
        while folder.exists():
            n += 1
            folder = self.root / f"{stamp}-{n:03d}-{kind}"
        folder.mkdir()
        for name, text in (files or {}).items():
            (folder / safe_name(name, "file name")).write_text(text)
        argv = [a.replace("{job}", str(folder)) for a in argv]
        write_json(folder / "job.json", {"id": folder.name, "kind": kind, "title": title, "argv": argv, "out": out,
                                         "created": _now()})
        write_json(folder / "status.json", {"state": "queued", "attempt": 1, "queued_at": _now()})
        job = Job(folder)
        self.tick()
        return job

    @property
    def threads_per_job(self) -> int:
        """CPU threads of one job: the cores shared among the slots, at least one."""
        return max(1, (os.cpu_count() or 1) // self.slots)

    def _start(self, job: Job) -> None:
        env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(self.threads_per_job)), "PYTHONUNBUFFERED": "1",
               "PYTHONSAFEPATH": "1"}  # also for any Python the command starts (Python 3.11+)
        with open(job.folder / "log.txt", "ab") as log:
            log.write(f"--- attempt {job.status.get('attempt', 1)}, {_now()}: cellbench "
                      f"{' '.join(job.spec['argv'])}\n".encode())
            log.flush()
            process = subprocess.Popen(
                worker_command(job.folder), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=job.folder, env=env,  # the job's own folder, which only the GUI writes
                start_new_session=True,  # its own process group: survives the server, stopped as a whole
            )
        self._processes[job.id] = process
        job.set_status(state="running", pid=process.pid, started=_now(), finished=None, returncode=None)

    def tick(self) -> None:
        """Reap finished workers, notice dead ones, start queued jobs while a slot is free."""
        running = 0
        for job in self.jobs():
            status = job.status
            if status.get("state") != "running":
                continue
            process = self._processes.get(job.id)
            if process is not None and process.poll() is not None:
                del self._processes[job.id]
                if job.state == "running":  # the worker died before writing its end
                    job.set_status(state="failed", returncode=process.returncode, finished=_now(),
                                   message=f"worker ended with exit code {process.returncode}")
            elif process is None and not _alive(status.get("pid")):
                job.set_status(state="failed", finished=_now(), message="worker process is gone")
            else:
                running += 1
        for job in self.jobs():
            if running >= self.slots:
                break
            if job.state == "queued":
                self._start(job)
                running += 1

    def join(self, timeout: float | None = None) -> None:
        """Wait until the workers this queue started have exited (a script or test that ends with its jobs)."""
        for job_id, process in list(self._processes.items()):
            process.wait(timeout)
            self._processes.pop(job_id, None)
        self.tick()

    def stop(self, job_id: str) -> None:
        """Stop a queued or running job (SIGTERM to its process group; the command cleans up its output)."""
        job = self.get(job_id)
        status = job.status
        if status.get("state") == "queued":
            job.set_status(state="stopped", finished=_now(), message="stopped before it started")
            return
        if status.get("state") != "running":
            return
        job.set_status(stop_requested=_now())
        pid = status.get("pid")
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        process = self._processes.pop(job_id, None)
        if process is not None:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                process.wait()
        if job.state == "running":
            job.set_status(state="stopped", finished=_now(), message="stopped")

    def resume(self, job_id: str) -> None:
        """Queue a stopped or failed job again; a training continues from its last finished epoch (``--resume``)."""
        job = self.get(job_id)
        if job.state not in ("stopped", "failed"):
            raise DataError(f"job is {job.state}; only stopped or failed jobs resume", path=job_id)
        spec = job.spec
        argv = list(spec.get("argv", []))
        if argv[:1] == ["train"] and "--resume" not in argv:
            write_json(job.folder / "job.json", {**spec, "argv": [*argv, "--resume"]})
        (job.folder / "progress.json").unlink(missing_ok=True)  # loss.json stays: the resumed epochs append to it
        job.set_status(state="queued", attempt=job.status.get("attempt", 1) + 1, queued_at=_now(),
                       stop_requested=None, message=None)
        self.tick()
