"""Ray and local executors give identical results on the same grid (a local Ray with 2 CPUs).

Marked ``slow`` and ``ray`` (starting Ray takes ~10 s): run with ``make test-slow``
or ``pytest -m ray``; skipped when Ray is not installed (``pip install 'cellbench[ray]'``).
"""

from __future__ import annotations

import pytest
from dbdump import db_content
from runner_helpers import experiment_dict

from cellbench.runner import LocalExecutor, RayExecutor, ResultStore, experiment_from_dict, run_experiment

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_ray_and_local_give_identical_results(tmp_path, tiny_data, fake_methods_path):
    exp = experiment_from_dict(experiment_dict(tiny_data, fail=True, coco=True))
    local = run_experiment(exp, tmp_path / "local", executor=LocalExecutor())
    executor = RayExecutor(num_cpus=2, init_kwargs={"runtime_env": {"env_vars": {"PYTHONPATH": str(fake_methods_path)}}})
    try:
        remote = run_experiment(exp, tmp_path / "ray", executor=executor)
    finally:
        ray.shutdown()
    assert (remote.n_entries, remote.n_failed) == (local.n_entries, local.n_failed) == (9, 3)
    assert db_content(tmp_path / "ray" / "results.sqlite") == db_content(tmp_path / "local" / "results.sqlite")
    with ResultStore.open(tmp_path / "ray" / "results.sqlite") as store:
        inv = store.query("SELECT executor_json FROM invocations")[0]
    assert '"executor": "ray"' in inv["executor_json"] and '"CPU": 2.0' in inv["executor_json"]


def _files(folder) -> list[str]:
    """Every file of a run folder but its lock, relative, sorted (a half-written file would be extra)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "run.lock")


def test_a_run_on_two_nodes_survives_losing_one(tmp_path, tiny_data, fake_methods_path):
    """A two-node cluster (head: 1 CPU, worker: 2) loses its worker node while it trains: the lost grid entries
    run again on the head, and the run folder and database equal an uninterrupted local run's."""
    import threading
    import time

    from ray.cluster_utils import Cluster

    log = tmp_path / "calls.log"
    exp = experiment_from_dict(experiment_dict(tiny_data, log=log, sleep_s=3.0, fail=True, coco=True))
    run_experiment(exp, tmp_path / "local", executor=LocalExecutor())
    log.unlink()

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    killed = threading.Event()

    def sleeping(lines, event):  # calls of the two methods that sleep 3 s in train ("broken" does not)
        return sum(1 for line in lines if line.split()[0] == event and float(line.split()[1]) in (60, 200))

    def kill_worker_while_it_trains():
        # Two sleeping trainings at once: the head runs one entry at a time, so one of them is on the worker.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines = log.read_text().splitlines() if log.exists() else []
            if sleeping(lines, "train-start") - sleeping(lines, "train-end") >= 2:
                cluster.remove_node(worker)
                killed.set()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_worker_while_it_trains, daemon=True)
    try:
        executor = RayExecutor(address=cluster.address,
                               init_kwargs={"runtime_env": {"env_vars": {"PYTHONPATH": str(fake_methods_path)}}})
        watcher.start()
        remote = run_experiment(exp, tmp_path / "ray", executor=executor)
        watcher.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed.is_set(), "the worker node was not killed while it trained"
    calls = log.read_text().splitlines()
    # 4 trainings of the sleeping methods (2 methods x 2 regimes), and at least one lost and run again
    assert sleeping(calls, "train-start") > sleeping(calls, "train-end") == 4, calls
    assert (remote.n_entries, remote.n_failed) == (9, 3)
    assert db_content(tmp_path / "ray" / "results.sqlite") == db_content(tmp_path / "local" / "results.sqlite")
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
