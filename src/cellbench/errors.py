"""The one exception type cellbench raises for bad input."""

from __future__ import annotations

from os import PathLike

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data: names the file (when there is one) and the problem.

    >>> str(DataError("label image has float dtype float32", path="a/b.tif"))
    'a/b.tif: label image has float dtype float32'
    """

    def __init__(self, problem: str, *, path: str | PathLike[str] | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")
