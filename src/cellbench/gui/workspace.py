"""The workspace: the one folder the GUI reads and writes, and nothing outside it.

Every path that comes from the browser is a path *relative* to the workspace;
:meth:`Workspace.resolve` turns it into a real path and refuses absolute
paths, ``..`` parts and symbolic links that lead out of the workspace, so a
shared lab server exposes one folder, not its whole disk.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cellbench.errors import DataError

__all__ = ["Workspace", "safe_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def safe_name(name: str, what: str = "name") -> str:
    """``name`` when it is a plain file or folder name (letters, digits, ``.``, ``_``, ``-``), else an error.

    >>> safe_name("my-model_1")
    'my-model_1'
    >>> safe_name("../x")
    Traceback (most recent call last):
    ...
    cellbench.errors.DataError: invalid name '../x': use letters, digits, '.', '_' and '-' (100 at most)
    """
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise DataError(f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' (100 at most)")
    return name


@dataclass(frozen=True)
class Workspace:
    """A folder holding the GUI's datasets, annotations, models, predictions, runs and jobs."""

    root: Path

    def __post_init__(self) -> None:
        root = Path(self.root).expanduser().resolve()
        if not root.is_dir():
            raise DataError("workspace folder not found", path=self.root)
        object.__setattr__(self, "root", root)

    def resolve(self, relative: str | os.PathLike) -> Path:
        """The real path of ``relative`` inside the workspace; an error for anything that would leave it.

        Refused: absolute paths (``/etc``, ``C:\\x``, ``\\\\host``), any ``..`` part, NUL bytes, and
        paths whose symbolic links lead outside the workspace.
        """
        text = os.fspath(relative)
        if "\x00" in text:
            raise DataError("path holds a NUL byte", path=repr(text))
        pure = PurePosixPath(text.replace("\\", "/"))
        if pure.is_absolute() or re.match(r"^[A-Za-z]:", text) or text.startswith(("/", "\\", "~")):
            raise DataError("absolute paths are refused: give a path inside the workspace", path=text)
        if any(part == ".." for part in pure.parts):
            raise DataError("'..' is refused: give a path inside the workspace", path=text)
        real = (self.root / pure).resolve()
        if real != self.root and not real.is_relative_to(self.root):
            raise DataError("path leads outside the workspace (symbolic link)", path=text)
        return real

    def inside(self, path: str | os.PathLike, what: str = "file") -> Path:
        """The real path of ``path`` (absolute or relative to the current folder) when it lies inside the workspace.

        A symbolic link is followed to where it leads; a link out of the workspace is an error naming ``path``.
        """
        try:
            real = Path(path).resolve()
        except (OSError, RuntimeError) as exc:  # a link loop
            raise DataError(f"cannot resolve the {what} ({exc})", path=path) from None
        if real != self.root and not real.is_relative_to(self.root):
            raise DataError(f"the {what} leads outside the workspace (symbolic link or absolute path); the GUI "
                            "reads nothing outside it", path=path)
        return real

    def check_tree(self, path: str | os.PathLike) -> Path:
        """The real path of ``path`` when neither it nor anything below it leads outside the workspace.

        Run before a dataset is read: the layout readers open masks, label images, annotation files and
        image headers while reading, so a mask linked to a file outside is refused here, before it is read.
        Links to folders inside the workspace are followed (each folder once).
        """
        real = self.inside(path, "dataset path")
        seen, stack = {real}, [real] if real.is_dir() else []
        while stack:
            try:
                entries = sorted(os.scandir(stack.pop()), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                target = self.inside(entry.path, "dataset file" if not entry.is_dir() else "dataset folder")
                if entry.is_dir() and target not in seen:
                    seen.add(target)
                    stack.append(target)
        return real

    def check_dataset(self, dataset):
        """``dataset`` when every file it names lies inside the workspace: images (a COCO file may name any
        path), label images (``labels_path``) and the annotation file it was read from."""
        self.inside(dataset.root, "dataset path")
        for sample in dataset.samples:
            if sample.image_path is not None:
                self.inside(sample.image_path, "image")
            for key, value in sample.meta.items():
                if key.endswith("_path") and isinstance(value, (str, os.PathLike)):
                    self.inside(value, key.replace("_", " "))
        return dataset

    def read_dataset(self, relative: str | os.PathLike, layout: str, **options):
        """:func:`cellbench.data.read_dataset` of a path inside the workspace, confined to the workspace.

        Checked before reading (:meth:`check_tree` of the path and of an ``image_dir`` option), while reading
        (the reader's ``confine_to``: each file a COCO json names, each folder an option names, is checked before
        it is tested or opened, so no error or size check tells anything of a file outside) and after
        (:meth:`check_dataset`: the files the dataset names). A :class:`DataError` names the file that leads out.
        """
        from cellbench.data import read_dataset

        path = self.check_tree(self.resolve(relative) if not Path(relative).is_absolute() else relative)
        if options.get("image_dir") is not None:
            options["image_dir"] = self.check_tree(options["image_dir"])
        options["confine_to"] = self.root  # also when a run's options name another folder
        return self.check_dataset(read_dataset(path, layout, **options))

    def relative(self, path: Path) -> str:
        """``path`` (inside the workspace) as the POSIX relative path the browser sees."""
        real = Path(path).resolve()
        if real == self.root:
            return "."
        if not real.is_relative_to(self.root):
            raise DataError("path is outside the workspace", path=path)
        return real.relative_to(self.root).as_posix()

    def folder(self, name: str) -> Path:
        """A top-level folder of the workspace (``models``, ``jobs``, ...), created when missing."""
        path = self.resolve(safe_name(name, "folder name"))
        path.mkdir(exist_ok=True)
        return path

    def _walk(self, *, max_depth: int) -> list[Path]:
        """Folders and files up to ``max_depth`` below the root, hidden ones and job folders skipped, no link
        followed out of the workspace."""
        found: list[Path] = []

        def visit(folder: Path, depth: int) -> None:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                return
            for entry in entries:
                if entry.name.startswith(".") or (depth == 0 and entry.name == "jobs"):
                    continue
                try:
                    real = entry.resolve()
                except OSError:
                    continue
                if not real.is_relative_to(self.root):
                    continue
                found.append(entry)
                if depth + 1 < max_depth and entry.is_dir() and not entry.is_symlink():
                    visit(entry, depth + 1)

        visit(self.root, 0)
        return found

    def dataset_candidates(self) -> list[str]:
        """Folders and ``.json`` / ``.npz`` files a layout reader may open, as relative paths."""
        out = []
        for p in self._walk(max_depth=4):
            if p.is_dir() and p.name not in ("images", "masks", "labels", "weights", "cache", "figures", "tables"):
                out.append(self.relative(p))
            elif p.suffix.lower() in (".json", ".npz") and p.name not in ("model.json", "cellseg1.json"):
                out.append(self.relative(p))
        return out

    def model_dirs(self) -> list[str]:
        """Folders holding a ``model.json`` (model directories written by ``cellbench train``)."""
        return [self.relative(p) for p in self._walk(max_depth=6) if p.is_dir() and (p / "model.json").is_file()]

    def run_dirs(self) -> list[str]:
        """Folders holding a ``results.sqlite`` (``cellbench run`` folders)."""
        return [self.relative(p) for p in self._walk(max_depth=4) if p.is_dir() and (p / "results.sqlite").is_file()]

    def prediction_dirs(self) -> list[str]:
        """Folders written by ``cellbench predict``."""
        return [self.relative(p) for p in self._walk(max_depth=4)
                if p.is_dir() and (p / "cellbench-predict.json").is_file()]

    def image_sources(self) -> list[str]:
        """Folders holding images and single image files: what ``cellbench predict --images`` takes."""
        from cellbench.data.images import IMAGE_SUFFIXES

        out = []
        for p in self._walk(max_depth=5):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                out.append(self.relative(p))
            elif p.is_dir() and any(c.suffix.lower() in IMAGE_SUFFIXES for c in p.iterdir() if c.is_file()):
                out.append(self.relative(p))
        return out
