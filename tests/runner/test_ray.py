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
