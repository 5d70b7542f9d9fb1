"""Folders of images with one label image each, in the layouts the field uses.

- ``cellpose``: ``x.tif`` beside ``x_masks.tif`` (or ``.tiff`` / ``.png``); the
  Cellpose dataset's own naming, ``000_img.png`` beside ``000_masks.png``, too.
- ``neurips`` (NeurIPS-2022 cell segmentation challenge, MEDIAR):
  ``images/x.*`` and ``labels/x_label.tiff``.
- ``dsb`` (StarDist / DSB2018): ``images/x.tif`` and ``masks/x.tif``, same names.
- ``folder``: ``images/`` and ``masks/`` (or ``labels/``), paired by stem,
  tolerating ``_mask(s)`` / ``_label(s)`` suffixes on the masks; the options
  ``images`` and ``masks`` name other folders (DeepBacs: ``brightfield/`` and
  ``masks_RoiMap/``).

When ``split`` is given, the layout is read from ``PATH/<split>/`` (StarDist's
DSB2018 ships ``train/`` and ``test/``). Label images are integer; ids may
have gaps; every image must have its labels, and the shapes must agree.

With ``confine_to``, every folder listed and every file tested or read must lie inside that folder
(:mod:`cellbench.data.confine`): an ``images`` / ``masks`` option or a ``split`` that leads out, or a
linked file whose target lies outside, is an error before it is listed or opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cellbench.data.confine import confine
from cellbench.data.dataset import Dataset, Sample
from cellbench.data.images import image_files, image_shape, missing_path, read_label_image
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

__all__ = ["read_cellpose", "read_dsb", "read_folder", "read_neurips"]

Pairs = list[tuple[Path, Path]]
Pairing = Callable[[Path, Path | None], Pairs]
"""(folder, confine_to) -> image and label file pairs."""
_MASK_SUFFIXES = ("_masks", "_mask", "_labels", "_label")


def _split_root(path: Path, split: str | None, confine_to: Path | None) -> Path:
    path = confine(path, confine_to, "dataset folder")
    if not path.is_dir():
        raise missing_path(path, "no such folder")
    if split is None:
        return path
    root = confine(path / split, confine_to, "split folder")
    if not root.is_dir():
        subdirs = ", ".join(sorted(p.name for p in path.iterdir() if p.is_dir())) or "none"
        raise DataError(f"split folder {split!r} not found; sub-folders: {subdirs}", path=path)
    return root


def _subdir(root: Path, names: tuple[str, ...], confine_to: Path | None) -> Path:
    for name in names:
        if confine(root / name, confine_to, "folder").is_dir():
            return root / name
    raise DataError(f"expected a {' or '.join(n + '/' for n in names)} folder", path=root)


def _unpaired(root: Path, what: str, names: list[str]) -> DataError:
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    return DataError(f"{len(names)} {what}: {shown}", path=root)


def _cellpose_pairs(root: Path, confine_to: Path | None) -> Pairs:
    files = image_files(root, confine_to=confine_to)
    # x_cp_masks is Cellpose's own prediction for x, not ground truth: ignored like x_flows
    masks = {
        p.stem[: -len("_masks")]: p for p in files if p.stem.endswith("_masks") and not p.stem.endswith("_cp_masks")
    }
    images = [p for p in files if not p.stem.endswith(("_masks", "_flows", "_outlines"))]
    return _match(root, images, masks, "images without a <stem>_masks file", "mask files without an image",
                  key=_cellpose_stem)


def _cellpose_stem(image: Path) -> str:
    """``x`` for ``x.tif``, and for ``x_img.png`` (the Cellpose dataset names its images so).

    >>> _cellpose_stem(Path("000_img.png")), _cellpose_stem(Path("cells.tif"))
    ('000', 'cells')
    """
    stem = image.stem
    return stem[: -len("_img")] if stem.endswith("_img") and len(stem) > len("_img") else stem


def _neurips_pairs(root: Path, confine_to: Path | None) -> Pairs:
    images, labels = _subdir(root, ("images",), confine_to), _subdir(root, ("labels",), confine_to)
    by_stem = {p.stem[: -len("_label")]: p for p in image_files(labels, confine_to=confine_to)
               if p.stem.endswith("_label")}
    return _match(root, image_files(images, confine_to=confine_to), by_stem,
                  "images without labels/<stem>_label.tiff")


def _dsb_pairs(root: Path, confine_to: Path | None) -> Pairs:
    images, masks = _subdir(root, ("images",), confine_to), _subdir(root, ("masks",), confine_to)
    return _match(
        root,
        image_files(images, confine_to=confine_to),
        {p.name: p for p in image_files(masks, confine_to=confine_to)},
        "images without a mask of the same name in masks/",
        "masks without an image of the same name in images/",
        key=lambda p: p.name,
    )


_IMAGE_FOLDERS, _MASK_FOLDERS = ("images", "imgs", "raw"), ("masks", "labels", "label")


def _folder_pairs(root: Path, confine_to: Path | None, image_names: tuple[str, ...] = _IMAGE_FOLDERS,
                  mask_names: tuple[str, ...] = _MASK_FOLDERS) -> Pairs:
    images, masks = _subdir(root, image_names, confine_to), _subdir(root, mask_names, confine_to)
    by_stem = {}
    for p in image_files(masks, confine_to=confine_to):
        stem = p.stem
        for suffix in _MASK_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        by_stem[stem] = p
    return _match(root, image_files(images, confine_to=confine_to), by_stem,
                  "images without a mask in the mask folder")


def _match(
    root: Path,
    images: list[Path],
    labels: dict[str, Path],
    missing_what: str,
    orphan_what: str = "label files without an image",
    *,
    key: Callable[[Path], str] = lambda p: p.stem,
) -> Pairs:
    """Pair each image with ``labels[key(image)]``; an image or a label file left alone is an error."""
    missing = [p.name for p in images if key(p) not in labels]
    if missing:
        raise _unpaired(root, missing_what, missing)
    orphans = sorted(set(labels) - {key(p) for p in images})
    if orphans:
        raise _unpaired(root, orphan_what, [labels[k].name for k in orphans])
    return [(p, labels[key(p)]) for p in images]


def _read(layout: str, path: Path, split: str | None, pairing: Pairing, progress: bool,
          confine_to: str | Path | None) -> Dataset:
    confine_to = None if confine_to is None else Path(confine_to)
    root = _split_root(path, split, confine_to)
    pairs = pairing(root, confine_to)  # image_files confined each file it lists
    if not pairs:
        raise DataError(f"no images found for layout {layout}", path=root)
    samples = []
    from tqdm import tqdm  # imported on use: importing tqdm reads package metadata (~25 ms)

    for image_path, mask_path in tqdm(pairs, desc=f"reading {layout}", disable=not progress, unit="image"):
        labels = read_label_image(mask_path)
        shape = image_shape(image_path)
        if shape != labels.shape:
            raise DataError(
                f"image is {shape[0]} x {shape[1]} but its labels {mask_path.name} are "
                f"{labels.shape[0]} x {labels.shape[1]}",
                path=image_path,
            )
        instances = InstanceSet.from_label_image(labels, source=str(mask_path))
        samples.append(
            Sample(name=image_path.stem, instances=instances, image_path=image_path, split=split,
                   meta={"labels_path": str(mask_path)})
        )
    return Dataset(layout=layout, root=root, samples=tuple(samples), classes=("cell",), split=split)


def read_cellpose(path: str | Path, *, split: str | None = None, progress: bool = False,
                  confine_to: str | Path | None = None) -> Dataset:
    """Cellpose layout: ``x.tif`` with ``x_masks.tif|tiff|png`` in one folder."""
    return _read("cellpose", Path(path), split, _cellpose_pairs, progress, confine_to)


def read_neurips(path: str | Path, *, split: str | None = None, progress: bool = False,
                 confine_to: str | Path | None = None) -> Dataset:
    """NeurIPS-2022 / MEDIAR layout: ``images/`` and ``labels/<stem>_label.tiff``."""
    return _read("neurips", Path(path), split, _neurips_pairs, progress, confine_to)


def read_dsb(path: str | Path, *, split: str | None = None, progress: bool = False,
             confine_to: str | Path | None = None) -> Dataset:
    """StarDist / DSB2018 layout: ``images/`` and ``masks/`` with the same file names."""
    return _read("dsb", Path(path), split, _dsb_pairs, progress, confine_to)


def read_folder(path: str | Path, *, split: str | None = None, images: str | None = None, masks: str | None = None,
                progress: bool = False, confine_to: str | Path | None = None) -> Dataset:
    """Plain ``images/`` + ``masks/`` (or ``labels/``), paired by stem; ``images`` / ``masks`` name other folders."""
    def pairing(root: Path, confine_to: Path | None) -> Pairs:
        return _folder_pairs(root, confine_to, (images,) if images else _IMAGE_FOLDERS,
                             (masks,) if masks else _MASK_FOLDERS)

    return _read("folder", Path(path), split, pairing, progress, confine_to)
