"""cellbench samples written as an nnU-Net v2 raw dataset, and the semantic classes nnU-Net learns.

nnU-Net segments pixels into classes; cellbench's instances become classes
the way the FeatureNet-style methods of the 18-methods benchmark do it:
``boundary`` target (default) gives background 0, cell interior 1 and cell
boundary 2 (the outer ring of each cell, ``boundary_px`` wide, so touching
cells are separated by boundary pixels); ``foreground`` gives background 0
and cell 1.

The raw layout is the one nnU-Net's users write by hand
(``documentation/dataset_format.md``)::

    nnUNet_raw/Dataset001_cellbench/
        dataset.json      channel_names, labels, numTraining, file_ending, image reader
        imagesTr/<case>_0000.tif   one 2-D float32 TIFF per channel (_0000, _0001, ...)
        labelsTr/<case>.tif        uint8 class image

The images are read by nnU-Net's ``NaturalImage2DIO`` (named in
dataset.json, so the ``.tif`` files are read as 2-D images), which gives each
image nnU-Net's 2-D shape (channels, 1, H, W) and spacing (999, 1, 1); the
values are the image's own, as float32, and nnU-Net's z-score normalisation
(channel name ``microscopy``) does the rest. Prediction feeds the same arrays
(:func:`nnunet_input`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import flatten, policy_from_name

__all__ = ["DATASET_ID", "DATASET_NAME", "SPACING", "Target", "class_names", "nnunet_input", "semantic_target",
           "write_raw_dataset"]

DATASET_ID = 1
DATASET_NAME = "Dataset001_cellbench"
#: What NaturalImage2DIO reports for every 2-D image: a dummy first axis of spacing 999.
SPACING = (999.0, 1.0, 1.0)
FILE_ENDING = ".tif"
Target = Literal["boundary", "foreground"]


def class_names(target: Target) -> dict[str, int]:
    """nnU-Net's ``labels`` entry of dataset.json for a target."""
    if target == "boundary":
        return {"background": 0, "interior": 1, "boundary": 2}
    return {"background": 0, "cell": 1}


def semantic_target(labels: np.ndarray, target: Target, boundary_px: int = 1) -> np.ndarray:
    """The class image nnU-Net trains on, from a label image.

    >>> lab = np.zeros((5, 5), int); lab[1:4, 1:4] = 1
    >>> semantic_target(lab, "boundary")
    array([[0, 0, 0, 0, 0],
           [0, 2, 2, 2, 0],
           [0, 2, 1, 2, 0],
           [0, 2, 2, 2, 0],
           [0, 0, 0, 0, 0]], dtype=uint8)
    """
    labels = np.asarray(labels)
    cells = labels > 0
    if target == "foreground":
        return cells.astype(np.uint8)
    from scipy import ndimage

    # A pixel is interior when every pixel within boundary_px (a square) has its own label.
    same = cells.copy()
    size = 2 * boundary_px + 1
    same &= ndimage.maximum_filter(labels, size=size, mode="nearest") == labels
    same &= ndimage.minimum_filter(labels, size=size, mode="nearest") == labels
    out = np.where(cells, 2, 0).astype(np.uint8)
    out[same] = 1
    return out


def nnunet_input(image: np.ndarray, n_channels: int | None = None, *, name: str = "image") -> np.ndarray:
    """An image as nnU-Net's 2-D reader gives it: float32 (channels, 1, H, W)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise DataError(f"{name} has shape {image.shape}; expected H x W or H x W x C")
    if n_channels is not None and image.shape[-1] != n_channels:
        if n_channels == 1:
            image = image.mean(axis=-1, keepdims=True)  # a colour image for a one-channel network: its grey levels
        elif image.shape[-1] == 1:
            image = np.repeat(image, n_channels, axis=-1)
        else:
            raise DataError(f"{name} has {image.shape[-1]} channels; this nnU-Net model takes {n_channels}")
    return np.ascontiguousarray(image.transpose(2, 0, 1)[:, None], dtype=np.float32)


def write_raw_dataset(
    folder: Path,
    train: Sequence[Sample],
    valid: Sequence[Sample] = (),
    *,
    target: Target = "boundary",
    boundary_px: int = 1,
    flatten_policy: str = "priority-last",
) -> tuple[list[str], list[str]]:
    """Write ``train`` and ``valid`` into ``folder`` (nnU-Net's ``nnUNet_raw``) as one dataset; return the
    training and validation case names (all cases go to imagesTr: nnU-Net's split file says which is which).
    """
    import tifffile

    if not train:
        raise DataError("nnunet: no training images")
    root = Path(folder) / DATASET_NAME
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    policy = policy_from_name(flatten_policy)
    n_channels = None
    names: tuple[list[str], list[str]] = ([], [])
    for group, samples in enumerate((train, valid)):
        for sample in samples:
            case = f"case_{sum(map(len, names)):04d}"
            x = nnunet_input(sample.load_image(), name=f"image {sample.name!r}")
            if n_channels is None:
                n_channels = x.shape[0]
            elif x.shape[0] != n_channels:
                raise DataError(f"nnunet: image {sample.name!r} has {x.shape[0]} channel(s), the first image "
                                f"{n_channels}; nnU-Net needs the same channels in every image")
            for c in range(n_channels):
                tifffile.imwrite(root / "imagesTr" / f"{case}_{c:04d}{FILE_ENDING}", x[c, 0])
            labels = flatten(sample.instances, policy).labels
            tifffile.imwrite(root / "labelsTr" / f"{case}{FILE_ENDING}", semantic_target(labels, target, boundary_px))
            names[group].append(case)
    dataset = {
        "channel_names": {str(c): "microscopy" for c in range(n_channels or 1)},  # any name but CT: z-score
        "labels": class_names(target),
        "numTraining": sum(map(len, names)),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "NaturalImage2DIO",
        "name": "cellbench",
        "description": f"written by cellbench; target {target}, boundary {boundary_px} px",
    }
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return names
