"""Helpers of the gallery tests: a tiny scored run of a watershed model, and a local HTTP server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import yaml

RUNNER_TESTS = Path(__file__).parents[1] / "runner"
if str(RUNNER_TESTS) not in sys.path:
    sys.path.insert(0, str(RUNNER_TESTS))

from runner_helpers import write_tiny_dsb  # noqa: E402

#: The watershed search of tests/methods/test_contract.py FAST, trimmed: trains in well under a second.
WATERSHED = {"sigmas": [0.0, 1.0], "threshold_scales": [0.9, 1.0], "distance_sigmas": [0.0],
             "min_distance_fractions": [0.3, 0.5]}


def tiny_run(root: Path) -> tuple[Path, Path]:
    """A finished run folder with one trained watershed entry scored on a held-out split; (run, model dir)."""
    from cellbench.runner import load_experiment, run_experiment

    data = write_tiny_dsb(root / "data")
    exp = {"name": "tiny-gallery", "seeds": [0],
           "datasets": {"tiny": {"layout": "dsb", "path": str(data), "train": "train", "test": ["test"]}},
           "methods": {"ws": {"method": "watershed", "config": WATERSHED, "tiling": {"tile": 0, "overlap": 0}}},
           "regimes": {"all": {"train_images": "all"}},
           "evaluation": {"thresholds": [0.5, 0.75, 0.9], "ground_truth": ["overlap", "flattened"], "coco": True}}
    (root / "exp.yaml").write_text(yaml.safe_dump(exp))
    run = root / "run"
    run_experiment(load_experiment(root / "exp.yaml"), run)
    (model,) = sorted((run / "cache").glob("*/model"))
    return run, model


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` served over http on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass
