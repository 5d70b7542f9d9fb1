"""Run one GUI job: ``python -m cellbench.gui.worker JOB_FOLDER``.

The job's command line goes to :func:`cellbench.cli.main.main`, the same code as
``cellbench train`` / ``cellbench predict`` in a terminal. Two things are added
around it, neither of which changes what the command computes:

* tqdm's bars (the CLI's progress) are reported to ``progress.json`` instead of a
  terminal: every bar with its position, the nested fraction done and an ETA;
* the training loss the method logs per epoch goes to ``loss.json`` (a resumed
  training keeps the rows of the epochs it does not redo).

SIGTERM (the GUI's Stop) raises :class:`Stopped` inside the command, so its
all-or-nothing output folder is removed as after any error.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from cellbench.gui.jobs import Job, _now, write_json

__all__ = ["Stopped", "main", "progress_snapshot"]


class Stopped(BaseException):
    """The job was asked to stop (SIGTERM)."""


def progress_snapshot(bars: list[dict]) -> dict:
    """Fraction done and ETA from nested bars (outermost first): each inner bar refines its outer bar's step.

    A bar that starts at ``initial`` (a resumed training) counts from there,
    and its ETA from the rate since it started.

    >>> s = progress_snapshot([{"n": 1, "total": 4, "elapsed": 10.0}, {"n": 1, "total": 2, "elapsed": 1.0}])
    >>> s["fraction"], s["eta_s"]
    (0.375, 16.7)
    >>> progress_snapshot([{"n": 3, "initial": 2, "total": 4, "elapsed": 10.0}])["eta_s"]
    10.0
    """
    fraction = 0.0
    for bar in reversed([b for b in bars if b.get("total")]):
        fraction = min(1.0, (bar["n"] + fraction) / bar["total"])
    elapsed = bars[0]["elapsed"] if bars else 0.0
    start = bars[0].get("initial", 0) / bars[0]["total"] if bars and bars[0].get("total") else 0.0
    eta = round(elapsed * (1 - fraction) / (fraction - start), 1) if fraction > start else None
    return {"bars": bars, "fraction": round(fraction, 4), "eta_s": eta, "elapsed_s": round(elapsed, 1),
            "updated": _now()}


def _reporting_tqdm(job: Job):
    """A tqdm class that always counts (even off a terminal) and writes the live bars to ``progress.json``."""
    import tqdm as tqdm_module

    base = tqdm_module.tqdm
    live: list = []
    last = [0.0]
    nowhere = open(os.devnull, "w")  # the bars draw nowhere; the file lives as long as the worker

    def write(force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - last[0] < 0.5:
            return
        last[0] = now
        bars = [{"desc": b.desc, "n": int(b.n), "initial": int(getattr(b, "initial", 0) or 0),
                 "total": int(b.total) if b.total else None, "elapsed": round(time.time() - b.start_t, 2)}
                for b in live]
        write_json(job.folder / "progress.json", progress_snapshot(bars))

    class Reporting(base):
        def __init__(self, *args, **kwargs):
            kwargs.update(disable=False, file=nowhere, mininterval=0.25, miniters=1)
            super().__init__(*args, **kwargs)
            live.append(self)
            write(force=True)

        def display(self, *args, **kwargs):
            write()
            return True

        def close(self):
            if self in live:
                if len(live) == 1:
                    self.n = self.total or self.n
                write(force=True)
                live.remove(self)
            super().close()

    return Reporting


class _LossLog(logging.Handler):
    """Collect ``epoch %d loss %f ...`` records (what cellbench's training loops log) into ``loss.json``."""

    def __init__(self, job: Job) -> None:
        super().__init__(logging.INFO)
        self.job = job
        self.rows: list[dict] = job.losses  # an earlier attempt's rows, for a resumed training

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if str(record.msg).startswith("epoch %d loss") and len(args) >= 2:
            epoch = int(args[0]) + 1  # rows of this epoch and later are from an attempt that is being redone
            self.rows = [*(r for r in self.rows if r.get("epoch", 0) < epoch), {"epoch": epoch, "loss": float(args[1])}]
            write_json(self.job.folder / "loss.json", self.rows)


def main(folder: str) -> int:
    job = Job(Path(folder))
    argv = list(job.spec["argv"])

    def on_term(signum, frame):
        raise Stopped()

    signal.signal(signal.SIGTERM, on_term)
    import tqdm

    tqdm.tqdm = _reporting_tqdm(job)
    logging.getLogger("cellbench").addHandler(_LossLog(job))
    from cellbench.cli.main import main as cli_main

    try:
        code = cli_main(["-v", *argv])
    except Stopped:
        print("cellbench gui: stopped", flush=True)
        job.set_status(state="stopped", finished=_now(), returncode=None, message="stopped")
        return 143
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    state = "done" if code == 0 else "failed"
    job.set_status(state=state, finished=_now(), returncode=code,
                   message=None if code == 0 else "the command failed: see the log")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
