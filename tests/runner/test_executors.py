"""Executors: results one at a time as grid entries finish; Ray's calls checked against a stand-in Ray (no cluster)."""

from __future__ import annotations

import functools
import sys

import pytest

from cellbench.errors import DataError
from cellbench.runner import LocalExecutor, RayExecutor


def test_local_executor_runs_each_item_only_when_its_result_is_taken():
    calls = []

    def fn(x):
        calls.append(x)
        return x * 10

    results = LocalExecutor().map(fn, iter([1, 2, 3]))
    assert calls == []  # nothing runs before the runner asks
    assert next(results) == 10 and calls == [1]  # the first result is there before the second entry starts
    assert list(results) == [20, 30] and calls == [1, 2, 3]
    assert LocalExecutor().describe() == {"executor": "local"} and LocalExecutor.name == "local"


def test_local_executor_stops_at_a_failing_item():
    def fn(x):
        if x == 2:
            raise RuntimeError("entry 2 broke")
        return x

    results = LocalExecutor().map(fn, [1, 2, 3])
    assert next(results) == 1
    with pytest.raises(RuntimeError, match="entry 2 broke"):
        next(results)


class _Ref:
    def __init__(self, compute):
        self.compute = compute


class FakeRay:
    """The few Ray calls RayExecutor makes; tasks finish in reverse order of submission."""

    __version__ = "0.0-test"

    def __init__(self, initialized: bool = False) -> None:
        self.initialized = initialized
        self.inits: list[dict] = []
        self.remote_options: list[dict] = []
        self.waits = 0

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs) -> None:
        self.inits.append(kwargs)
        self.initialized = True

    def put(self, obj):
        return _Ref(lambda: obj)

    def remote(self, **options):
        self.remote_options.append(options)

        def decorate(func):
            class Task:
                @staticmethod
                def remote(fn_ref, item):
                    return _Ref(lambda: func(self.get(fn_ref), item))

            return Task

        return decorate

    def wait(self, pending, num_returns=1):
        assert num_returns == 1
        self.waits += 1
        return [pending[-1]], pending[:-1]

    def get(self, ref):
        return ref.compute()

    def cluster_resources(self):
        return {"CPU": 4, "GPU": 1, "memory": 2.0e9, "node:10.0.0.1": 1.0}


@pytest.fixture
def fake_ray(monkeypatch):
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    return ray


def _scale(x, *, factor):
    return x * factor


def test_ray_executor_yields_results_as_tasks_complete(fake_ray):
    executor = RayExecutor(num_cpus=3, cpus_per_entry=0.5)
    results = list(executor.map(functools.partial(_scale, factor=2), [1, 2, 3]))
    assert results == [6, 4, 2]  # completion order, not submission order
    assert fake_ray.waits == 3
    # an entry lost with its worker or node reruns; one that raised does not
    assert fake_ray.remote_options == [{"num_cpus": 0.5, "max_retries": 3, "retry_exceptions": False}]
    assert fake_ray.inits == [{"include_dashboard": False, "log_to_driver": False, "num_cpus": 3}]


def test_ray_executor_joins_a_cluster_by_address_and_passes_init_kwargs(fake_ray):
    env = {"env_vars": {"A": "1"}}
    RayExecutor(address="auto", num_cpus=8, init_kwargs={"runtime_env": env, "log_to_driver": True}).describe()
    assert fake_ray.inits == [{"include_dashboard": False, "log_to_driver": True, "runtime_env": env,
                               "address": "auto"}]  # num_cpus only for a local Ray


def test_ray_executor_uses_an_initialised_ray_as_it_is(monkeypatch):
    ray = FakeRay(initialized=True)
    monkeypatch.setitem(sys.modules, "ray", ray)
    assert list(RayExecutor().map(str, [5])) == ["5"]
    assert ray.inits == []


def test_ray_describe_records_cpus_and_gpus_only(fake_ray):
    assert RayExecutor(cpus_per_entry=2).describe() == {
        "executor": "ray", "address": None, "cpus_per_entry": 2, "ray_version": "0.0-test",
        "cluster_resources": {"CPU": 4.0, "GPU": 1.0},
    }


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    executor = RayExecutor()
    with pytest.raises(DataError, match=r"pip install 'cellbench\[ray\]'"):
        list(executor.map(str, [1]))
    with pytest.raises(DataError, match="needs Ray"):
        executor.describe()
