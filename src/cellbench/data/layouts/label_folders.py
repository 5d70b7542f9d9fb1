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
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cellbench.data.dataset import Dataset, Sample
from cellbench.data.images import image_files, image_shape, missing_path, read_label_image
from cellbench.errors import DataError
from cellbench.instances import InstanceSet

__all__ = ["read_cellpose", "read_dsb", "read_folder", "read_neurips"]

Pairs = list[tuple[Path, Path]]
_MASK_SUFFIXES = ("_masks", "_mask", "_labels", "_label")


def _split_root(path: Path, split: str | None) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise missing_path(path, "no such folder")
    if split is None:
        return path
    root = path / split
    if not root.is_dir():
        subdirs = ", ".join(sorted(p.name for p in path.iterdir() if p.is_dir())) or "none"
        raise DataError(f"split folder {split!r} not found; sub-folders: {subdirs}", path=path)
    return root


def _subdir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"expected a {' or '.join(n + '/' for n in names)} folder", path=root)


def _unpaired(root: Path, what: str, names: list[str]) -> DataError:
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    return DataError(f"{len(names)} {what}: {shown}", path=root)


def _cellpose_pairs(root: Path) -> Pairs:
    files = image_files(root)
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


def _neurips_pairs(root: Path) -> Pairs:
    images, labels = _subdir(root, ("images",)), _subdir(root, ("labels",))
    by_stem = {p.stem[: -len("_label")]: p for p in image_files(labels) if p.stem.endswith("_label")}
    return _match(root, image_files(images), by_stem, "images without labels/<stem>_label.tiff")


def _dsb_pairs(root: Path) -> Pairs:
    images, masks = _subdir(root, ("images",)), _subdir(root, ("masks",))
    return _match(
        root,
        image_files(images),
        {p.name: p for p in image_files(masks)},
        "images without a mask of the same name in masks/",
        "masks without an image of the same name in images/",
        key=lambda p: p.name,
    )


_IMAGE_FOLDERS, _MASK_FOLDERS = ("images", "imgs", "raw"), ("masks", "labels", "label")


def _folder_pairs(root: Path, image_names: tuple[str, ...] = _IMAGE_FOLDERS,
                  mask_names: tuple[str, ...] = _MASK_FOLDERS) -> Pairs:
    images, masks = _subdir(root, image_names), _subdir(root, mask_names)
    by_stem = {}
    for p in image_files(masks):
        stem = p.stem
        for suffix in _MASK_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        by_stem[stem] = p
    return _match(root, image_files(images), by_stem, "images without a mask in the mask folder")


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


def _read(layout: str, path: Path, split: str | None, pairing: Callable[[Path], Pairs], progress: bool) -> Dataset:
    root = _split_root(path, split)
    pairs = pairing(root)
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


def read_cellpose(path: str | Path, *, split: str | None = None, progress: bool = False) -> Dataset:
    """Cellpose layout: ``x.tif`` with ``x_masks.tif|tiff|png`` in one folder."""
    return _read("cellpose", Path(path), split, _cellpose_pairs, progress)


def read_neurips(path: str | Path, *, split: str | None = None, progress: bool = False) -> Dataset:
    """NeurIPS-2022 / MEDIAR layout: ``images/`` and ``labels/<stem>_label.tiff``."""
    return _read("neurips", Path(path), split, _neurips_pairs, progress)


def read_dsb(path: str | Path, *, split: str | None = None, progress: bool = False) -> Dataset:
    """StarDist / DSB2018 layout: ``images/`` and ``masks/`` with the same file names."""
    return _read("dsb", Path(path), split, _dsb_pairs, progress)


def read_folder(path: str | Path, *, split: str | None = None, images: str | None = None, masks: str | None = None,
                progress: bool = False) -> Dataset:
    """Plain ``images/`` + ``masks/`` (or ``labels/``), paired by stem; ``images`` / ``masks`` name other folders."""
    def pairing(root: Path) -> Pairs:
        return _folder_pairs(root, (images,) if images else _IMAGE_FOLDERS, (masks,) if masks else _MASK_FOLDERS)

    return _read("folder", Path(path), split, pairing, progress)
