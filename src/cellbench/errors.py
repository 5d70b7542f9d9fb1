"""The one exception type cellbench raises for bad input."""

from __future__ import annotations

from os import PathLike, fspath

__all__ = ["DataError", "printable"]


class DataError(ValueError):
    """Bad input data: names the file (when there is one) and the problem.

    >>> str(DataError("label image has float dtype float32", path="a/b.tif"))
    'a/b.tif: label image has float dtype float32'
    """

    def __init__(self, problem: str, *, path: str | PathLike[str] | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(printable(problem if self.path is None else f"{self.path}: {problem}"))


def printable(text: str | PathLike[str]) -> str:
    r"""``text`` (a message or a path) as it can be printed: file-name bytes that are not UTF-8 become ``\xNN``.

    Such names reach Python as lone surrogates, which a UTF-8 terminal cannot print.

    >>> printable(b"dir/caf\xe9.tif".decode("utf-8", "surrogateescape"))
    'dir/caf\\xe9.tif'
    """
    text = fspath(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that does not stand for a byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
