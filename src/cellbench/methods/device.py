"""Where a torch method runs: one rule for the device and one for the CPU threads, for every torch method.

The thread rule: a torch method's ``train`` and ``predict`` (and any other public
call that runs its network) carry :func:`on_config_threads`, so they run on the
config's ``threads``, whoever calls them: ``cellbench train`` / ``predict``, the
runner, the GUI's jobs, a script. Methods do not call :func:`torch_threads`
themselves, nor set thread variables of the environment; the whole call runs on
the count, its data preparation and validation included.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["check_threads", "on_config_threads", "torch_device", "torch_threads"]

F = TypeVar("F", bound=Callable[..., Any])


def torch_device(name: str = "auto") -> Any:
    """``auto``: CUDA when torch has it, else the CPU; any other name (``cpu``, ``cuda:1``) as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's CPU work on ``n`` threads (0: leave torch's setting), restoring it afterwards.

    The thread count is part of what a CPU training computes: another count
    sums in another order, so the weights differ in the last bits and the
    scores a little. A config that names its count trains the same weights on
    any machine with the same kind of CPU. On a CPU shared with other jobs one
    thread per process also avoids OpenMP threads waiting on each other: two
    threads on two busy cores measured 20x slower per step than one.
    """
    import torch

    if n <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_threads(threads: int) -> None:
    """The rule for a method config's ``threads`` field: 0 (torch's default) or a count.

    >>> check_threads(-1)
    Traceback (most recent call last):
    ...
    ValueError: threads must be 0 (torch's default) or more, got -1
    """
    if threads < 0:
        raise ValueError(f"threads must be 0 (torch's default) or more, got {threads}")


def on_config_threads(call: F) -> F:
    """Run a method's ``train`` or ``predict`` on ``self.config.threads`` torch threads (:func:`torch_threads`).

    The wrapped call says so in ``runs_on_config_threads``, which the tests check for every
    method with a ``threads`` field.
    """

    @functools.wraps(call)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(self.config.threads):
            return call(self, *args, **kwargs)

    wrapper.runs_on_config_threads = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
