"""Executors: where grid entries run. Passed to the runner as objects, never registered.

An executor has one call, ``map(fn, items)``, yielding ``fn(item)`` for every
item *as each finishes* (any order). The runner commits each result the
moment it arrives, so what finished is safe whatever happens next.

* :class:`LocalExecutor` runs grid entries one after the other in this process (the default).
* :class:`RayExecutor` sends grid entries to a Ray cluster (``pip install 'cellbench[ray]'``);
  ``address=None`` starts a local Ray, ``"auto"`` or ``"ray://host:10001"`` joins one.
  Workers must see the dataset paths and the run folder (a shared file system).
  A grid entry lost with its worker or node (killed, out of memory, a machine gone)
  is run again on another (up to :data:`SYSTEM_RETRIES` times); an entry that
  raised is recorded as failed, not rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from cellbench.errors import DataError

__all__ = ["SYSTEM_RETRIES", "Executor", "LocalExecutor", "RayExecutor"]

#: Times Ray reruns a grid entry whose worker process or node died under it (Ray's ``max_retries``, which
#: counts system failures only: an exception raised by the entry is not retried, ``retry_exceptions`` stays off).
#: What a lost entry wrote is whole files only (the run cache writes atomically), so its rerun starts clean.
SYSTEM_RETRIES = 3


class Executor(Protocol):
    name: str

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]: ...

    def describe(self) -> dict: ...


class LocalExecutor:
    """Grid entries one at a time, in this process."""

    name = "local"

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield fn(item)

    def describe(self) -> dict:
        return {"executor": self.name}


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    """The Ray task: ``fn`` may be any picklable callable (a partial, say), which ``ray.remote`` refuses."""
    return fn(item)


class RayExecutor:
    """Grid entries as Ray tasks, results yielded as they complete.

    Args:
        address: ``None`` starts a local Ray; otherwise passed to ``ray.init(address=...)``.
        num_cpus: CPUs of a local Ray (ignored when joining a cluster).
        cpus_per_entry: CPUs Ray reserves for each grid entry (an entry trains one model).
        init_kwargs: more keyword arguments for ``ray.init`` (e.g. ``runtime_env``).
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_entry: float = 1,
        init_kwargs: dict | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_entry = cpus_per_entry
        self.init_kwargs = dict(init_kwargs or {})

    def _ray(self):
        try:
            import ray
        except ImportError as exc:
            raise DataError("the ray executor needs Ray: pip install 'cellbench[ray]'") from exc
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address is None:
                kwargs["num_cpus"] = self.num_cpus
            else:
                kwargs["address"] = self.address
            ray.init(**kwargs)
        return ray

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        ray = self._ray()
        remote = ray.remote(num_cpus=self.cpus_per_entry, max_retries=SYSTEM_RETRIES, retry_exceptions=False)(_call)
        fn_ref = ray.put(fn)
        pending = [remote.remote(fn_ref, item) for item in items]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    def describe(self) -> dict:
        """Executor settings and the cluster's CPUs / GPUs (this connects to Ray, as running would)."""
        ray = self._ray()
        resources = {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        return {"executor": self.name, "address": self.address, "cpus_per_entry": self.cpus_per_entry,
                "ray_version": ray.__version__, "cluster_resources": resources}
