"""Confining a dataset reader to one folder: every file it reads lies inside.

The GUI reads datasets from its workspace and nothing else, but a dataset's files can lead elsewhere: a COCO
json names its images by any path (absolute, or with ``..``), a reader looks for images in folders beside the
json's folder, and a symbolic link leads anywhere. Given ``confine_to=``, each layout reader passes every path
through :func:`confine` before it opens, lists or even tests for the file, so a path that leads out is refused
by name and no error or shape check tells whether a file outside exists or how large it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from cellbench.errors import DataError

__all__ = ["confine", "is_inside"]


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Does ``path``, its symbolic links followed, lie in the folder ``root`` (or is it ``root``)?

    Lexical for the parts that do not exist: nothing is opened, only links are read.

    >>> is_inside("/no-such-workspace/set/a.tif", "/no-such-workspace")
    True
    >>> is_inside("/no-such-workspace/../secret.tif", "/no-such-workspace")
    False
    """
    try:
        real, folder = Path(path).resolve(), Path(root).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop or a NUL byte leads nowhere, so not inside
        return False
    return real == folder or real.is_relative_to(folder)


def confine(path: str | os.PathLike, root: str | os.PathLike | None, what: str = "file") -> Path:
    """``path`` as given when ``root`` is None or ``path`` lies inside ``root``; else a :class:`DataError` naming it.

    ``what`` says in the error what the path is (``"image"``, ``"label file"`` ...).

    >>> str(confine("set/a.tif", None))
    'set/a.tif'
    >>> confine("/no-such-workspace/../secret.tif", "/no-such-workspace", "image")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cellbench.errors.DataError: /no-such-workspace/../secret.tif: the image lies outside the allowed folder ...
    """
    path = Path(path)
    if root is not None and "\x00" in str(path):
        raise DataError(f"the {what}'s path holds a NUL byte", path=repr(str(path)))
    if root is not None and not is_inside(path, root):
        raise DataError(f"the {what} lies outside the allowed folder {root} (an absolute path, '..' or a symbolic "
                        "link leads out); nothing outside it is read", path=path)
    return path
