"""Training samples as an Ultralytics segmentation dataset: images, one polygon per instance, ``data.yaml``.

Ultralytics reads ``images/<split>/<name>.png`` with a label file
``labels/<split>/<name>.txt`` beside it, one line per instance::

    <class index> x1 y1 x2 y2 ...     (vertices normalised by the image width and height)

Every instance gets its own line, whether or not it overlaps another, so the
overlapping Glioma C6 ground truth reaches the network as annotated (the
paper: "no such conversion was required for YOLOv11"). An instance made of
several parts is still one line: its parts are joined into one outline by
zero-width bridges (the way Ultralytics' own COCO converter joins a
multi-part polygon). Outlines come from the instance masks, which are what
cellbench scores against, so training and scoring see the same objects.

Nothing here needs torch or ultralytics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from cellbench.data.dataset import Sample
from cellbench.errors import DataError
from cellbench.instances import Instance
from cellbench.methods.preprocess import PreprocessConfig, preprocess

__all__ = ["instance_outline", "label_lines", "to_uint8_rgb", "write_dataset"]


def to_uint8_rgb(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """The H x W x 3 uint8 image the network sees: cellbench preprocessing, [0, 1] to 0-255, gray
    repeated, two channels padded with a zero channel, more than three cut to the first three.

    >>> to_uint8_rgb(np.array([[0, 100], [200, 400]]), PreprocessConfig(low=0, high=100))[..., 0].tolist()
    [[0, 64], [128, 255]]
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise DataError(f"image must be H x W or H x W x C, got shape {image.shape}")
    x = np.clip(preprocess(image, config), 0.0, 1.0)
    x = np.rint(x * 255).astype(np.uint8)
    if x.ndim == 2:
        return np.repeat(x[..., None], 3, axis=-1)
    if x.shape[-1] >= 3:
        return np.ascontiguousarray(x[..., :3])
    return np.concatenate([x, np.zeros((*x.shape[:2], 3 - x.shape[-1]), np.uint8)], axis=-1)


def _part_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """One closed outline (n x 2, x / y in pixel-edge coordinates) per connected part, holes filled,
    largest part first."""
    from scipy import ndimage
    from skimage.measure import approximate_polygon, find_contours

    parts, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    outlines = []
    for k in range(1, n + 1):
        part = ndimage.binary_fill_holes(parts == k)
        rings = find_contours(np.pad(part, 1).astype(np.float32), 0.5)
        ring = max(rings, key=len)  # the outer boundary (holes are filled)
        ring = approximate_polygon(ring, tolerance=0.5)
        # find_contours gives (row, col) of the padded array through pixel centres; pixel-edge x / y is +0.5 - 1
        outlines.append((int(part.sum()), np.stack([ring[:, 1] - 0.5, ring[:, 0] - 0.5], axis=1)))
    outlines.sort(key=lambda t: -t[0])
    return [o for _, o in outlines]


def _bridge(path: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``path`` with ``part`` spliced in at their closest vertices (out along a zero-width bridge and back)."""
    d = ((path[:, None, :] - part[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    ring = np.concatenate([part[j:], part[:j + 1]])  # the part's loop, starting and ending at vertex j
    return np.concatenate([path[: i + 1], ring, path[i:]])


def instance_outline(instance: Instance) -> np.ndarray:
    """One polygon (n x 2, x / y in image pixel-edge coordinates) for an instance, parts bridged together.

    >>> from cellbench.instances import Instance
    >>> square = Instance.from_mask(np.ones((4, 4), bool), offset=(2, 3))
    >>> outline = instance_outline(square)
    >>> float(outline[:, 0].min()), float(outline[:, 0].max()), float(outline[:, 1].min()), float(outline[:, 1].max())
    (3.0, 7.0, 2.0, 6.0)
    """
    parts = _part_outlines(instance.mask)
    path = parts[0]
    for part in parts[1:]:
        path = _bridge(path, part)
    y0, x0 = instance.bbox[:2]
    return path + np.array([x0, y0], dtype=path.dtype)


def label_lines(sample: Sample, shape: tuple[int, int]) -> list[str]:
    """The Ultralytics label file of one sample: ``class x1 y1 ...`` per instance, coordinates in [0, 1].

    Overlapping instances each keep their own line; instances too small for an outline of three
    vertices are left out.
    """
    h, w = shape
    lines = []
    for inst in sample.instances:
        if inst.area == 0:
            continue
        outline = instance_outline(inst)
        if len(outline) < 3:
            continue
        xy = np.clip(outline / np.array([w, h], dtype=np.float64), 0.0, 1.0)
        lines.append(f"{inst.class_id} " + " ".join(f"{v:.6f}" for v in xy.reshape(-1)))
    return lines


def _write_split(samples: Sequence[Sample], root: Path, split: str, config: PreprocessConfig) -> None:
    import imageio.v3 as iio

    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for k, s in enumerate(samples):
        image = to_uint8_rgb(s.load_image(), config)
        if image.shape[:2] != tuple(s.instances.shape):
            raise DataError(f"image {s.name!r} is {image.shape[:2]}, its instances are {s.instances.shape}",
                            path=s.image_path)
        stem = f"{k:05d}"  # sample names may hold characters or repeats a file name cannot
        iio.imwrite(images / f"{stem}.png", image)
        (labels / f"{stem}.txt").write_text("\n".join(label_lines(s, image.shape[:2])) + "\n")


def write_dataset(root: Path, train: Sequence[Sample], valid: Sequence[Sample] | None, classes: Sequence[str],
                  config: PreprocessConfig) -> Path:
    """Write ``train`` (and ``valid``) under ``root`` in Ultralytics' layout; returns the ``data.yaml`` path.

    Without validation samples the training images stand in as Ultralytics' ``val`` split (it needs
    one); the method then does not select on them.
    """
    root = Path(root)
    _write_split(train, root, "train", config)
    if valid:
        _write_split(valid, root, "val", config)
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val" if valid else "images/train",
            "names": dict(enumerate(str(c) for c in classes)), "channels": 3}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
