"""What a training run will cost, said early: estimated from its first steps.

Methods report progress through a tqdm-like factory (``progress(iterable,
desc=..., ...)``). :class:`CostEstimate` wraps such a factory: it watches the
first bar a method opens (epochs, or the settings of a grid search) and, while
that bar is still on its first item, a bar opened inside it (the steps of the
first epoch). As soon as ``min_seconds`` have passed it extrapolates the whole
run from what is done and calls ``notice`` once with the estimate in seconds.
So ``cellbench train cellseg1`` with the paper's 300 epochs on a CPU says
within a minute that it needs many hours, instead of after the first epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["NOTICE_AFTER_S", "CostEstimate", "format_duration"]

#: Seconds of training watched before the estimate is made.
NOTICE_AFTER_S = 10.0


def format_duration(seconds: float) -> str:
    """Seconds in words a person reads at a glance.

    >>> format_duration(42), format_duration(754), format_duration(3 * 3600 + 1260)
    ('42 s', '13 min', '3 h 21 min')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours:.0f} h {rest / 60:.0f} min"


@dataclass
class _Level:
    total: int
    desc: str
    done: int = 0


class CostEstimate:
    """A progress factory that passes bars through and estimates the whole run once.

    Args:
        inner: the factory that draws the bars (e.g. ``tqdm``), or None for no bars.
        notice: called once with (estimated total seconds, what was measured, in words).
        min_seconds: how long to watch before extrapolating.

    >>> said = []
    >>> watch = CostEstimate(None, lambda s, how: said.append(how), min_seconds=0.0)
    >>> for epoch in watch(range(10), desc="epochs"):
    ...     for step in watch(range(4), desc="steps"):
    ...         pass
    >>> said
    ['steps 1 of 4 in the first of 10 epochs']

    A bar resumed at ``initial`` counts only what is left:

    >>> said = []
    >>> watch = CostEstimate(None, lambda s, how: said.append(how), min_seconds=0.0)
    >>> for epoch in watch(range(7, 10), total=10, initial=7, desc="epochs"):
    ...     pass
    >>> said
    ['epochs 1 of 3']
    """

    def __init__(self, inner: Callable[..., Any] | None, notice: Callable[[float, str], None], *,
                 min_seconds: float | None = None) -> None:
        self.inner = inner
        self.notice = notice
        self.min_seconds = NOTICE_AFTER_S if min_seconds is None else min_seconds
        self.outer: _Level | None = None
        self.nested = False
        self.said = False

    def __call__(self, iterable: Iterable | None = None, **kwargs: Any) -> Iterable:
        bar = self.inner(iterable, **kwargs) if self.inner is not None else iterable
        total = kwargs.get("total")
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                return bar
        total = int(total) - int(kwargs.get("initial") or 0)  # a resumed bar: only what is left to run
        if self.said or total <= 0:
            return bar
        if self.outer is None:
            self.outer = _Level(total, kwargs.get("desc") or "rounds")
            return self._watch(bar, self.outer, None)
        if self.outer.done == 0 and not self.nested:
            self.nested = True
            return self._watch(bar, _Level(total, kwargs.get("desc") or "steps"), self.outer)
        return bar

    def _watch(self, bar: Iterable, level: _Level, outer: _Level | None) -> Iterator:
        start = time.perf_counter()
        for item in bar:
            if level.done:
                self._check(level, outer, time.perf_counter() - start)
            yield item
            level.done += 1
        self._check(level, outer, time.perf_counter() - start)

    def _check(self, level: _Level, outer: _Level | None, elapsed: float) -> None:
        if self.said or elapsed < self.min_seconds or not level.done:
            return
        if outer is not None and outer.done:  # the first outer item is over: measure the outer bar instead
            return
        self.said = True
        per_item = elapsed / level.done
        if outer is None:
            self.notice(per_item * level.total, f"{level.desc} {level.done} of {level.total}")
        else:
            self.notice(per_item * level.total * outer.total,
                        f"{level.desc} {level.done} of {level.total} in the first of {outer.total} {outer.desc}")
