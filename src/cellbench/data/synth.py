"""A synthetic dataset in the exact Glioma C6 layout, of any size.

Phase-contrast-like 8-bit images (2592 x 1944 by default) with overlapping
cells of two shape types and a soma inside each spec cell:

- type A: small and convex, spheroid (bright halo) or spindle-shaped;
- type B: large, flat, irregular, low contrast.

Annotations are COCO polygons as in the real dataset: spec splits have
categories ``Cell type A`` / ``Cell type B`` (supercategory ``cell``) and
``Soma`` (supercategory ``cell_part``); the gen part has one untyped ``Cell``
category. Cells cut by the image border, and a few cells with a detached
protrusion, are multi-part polygons: still one annotation each. Images are
split 30 / 4 / 11 / 30 (train / valid / test / gen) like the real dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import shapely
import tifffile
from scipy import ndimage
from shapely.geometry import box

from cellbench.files import staged_dir
from cellbench.instances import polygon_problem, rasterize_polygon

__all__ = ["SPLIT_SHARES", "split_counts", "synth_glioma_c6"]

SPLIT_SHARES = {"train": 30, "valid": 4, "test": 11, "gen": 30}
_FOLDERS = {"train": "spec/train", "valid": "spec/valid", "test": "spec/test", "gen": "gen"}
_SPEC_CATEGORIES = [
    {"id": 1, "name": "Cell type A", "supercategory": "cell"},
    {"id": 2, "name": "Cell type B", "supercategory": "cell"},
    {"id": 3, "name": "Soma", "supercategory": "cell_part"},
]
_GEN_CATEGORIES = [{"id": 1, "name": "Cell", "supercategory": "cell"}]
_MIN_AREA = 89.0  # the real dataset has no polygon under 89 px


def split_counts(n_images: int) -> dict[str, int]:
    """Images per split in the real proportions; every split gets one once there are four.

    >>> split_counts(75)
    {'train': 30, 'valid': 4, 'test': 11, 'gen': 30}
    >>> split_counts(4)
    {'train': 1, 'valid': 1, 'test': 1, 'gen': 1}
    """
    if n_images < 1:
        raise ValueError(f"need at least one image, got {n_images}")
    total = sum(SPLIT_SHARES.values())
    order = ["train", "test", "gen", "valid"]
    counts = dict.fromkeys(SPLIT_SHARES, 0)
    for name in order[: min(n_images, 4)]:
        counts[name] = 1
    # Each further image goes to the split furthest below its share (ties: train, test, gen, valid).
    # (Flooring the shares first could overshoot n when the one-image minimums exceed small shares.)
    for _ in range(n_images - sum(counts.values())):
        name = max(order, key=lambda k: SPLIT_SHARES[k] * n_images / total - counts[k])
        counts[name] += 1
    return counts


def _star(rng: np.random.Generator, a: float, b: float, wobble: float, n: int = 56):
    """A star-shaped outline around the origin: an ellipse (a, b) times 1 + harmonics <= wobble."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ellipse = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    k = np.arange(2, 6)[:, None]
    amp = rng.dirichlet(np.ones(4)) * wobble * rng.uniform(0.5, 1.0)
    harm = (amp[:, None] * np.cos(k * theta + rng.uniform(0, 2 * np.pi, (4, 1)))).sum(0)
    return theta, ellipse * (1 + harm)


def _rotate(x, y, angle, cx, cy):
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _cell(rng: np.random.Generator, cx: float, cy: float):
    """(kind, cell outline, soma outline) in image coordinates."""
    kind = "A" if rng.random() < 0.4 else "B"
    if kind == "A" and rng.random() < 0.5:  # spheroid
        r = rng.uniform(16, 22)
        a, b, wobble = r, r * rng.uniform(0.9, 1.0), 0.08
    elif kind == "A":  # spindle
        a, b, wobble = rng.uniform(35, 55), rng.uniform(11, 15), 0.1
    else:
        r = rng.uniform(35, 60)
        a, b, wobble = r * rng.uniform(1.0, 1.6), r, 0.3
    angle = rng.uniform(0, np.pi)
    theta, radius = _star(rng, a, b, wobble)
    cell = _rotate(radius * np.cos(theta), radius * np.sin(theta), angle, cx, cy)
    # An ellipse scaled by (1 - wobble) / 2 lies inside the cell in every direction.
    s = 0.5 * (1 - wobble)
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    soma = _rotate(s * a * np.cos(t), s * b * np.sin(t), angle, cx, cy)
    return kind, cell, soma


def _clip(outline: np.ndarray, frame) -> list[np.ndarray]:
    """Parts of a polygon inside the image (a cell cut by the border may fall in pieces)."""
    geom = shapely.Polygon(outline).intersection(frame)
    polys = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, shapely.Polygon) and g.area >= 1.0]
    return [np.round(np.asarray(p.exterior.coords)[:-1], 2) for p in polys]


def _annotation(ann_id: int, image_id: int, category_id: int, parts: list[np.ndarray]) -> dict:
    geom = shapely.union_all([shapely.Polygon(p) for p in parts])
    x0, y0, x1, y1 = geom.bounds
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [p.ravel().tolist() for p in parts],
        "area": round(float(geom.area), 2),
        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
        "iscrowd": 0,
    }


def _render(shape, rng, cells: list[tuple[str, list[np.ndarray]]], somata: list[list[np.ndarray]]) -> np.ndarray:
    """Phase-contrast-like image: dim flat B cells, haloed A cells, dark somata with nuclei."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gy, gx = rng.uniform(-12, 12, 2)
    img = 118 + gy * (yy / h - 0.5) + gx * (xx / w - 0.5) - 8 * ((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2)
    for kind, parts in cells:
        inst = rasterize_polygon(parts, shape)
        pad = 4
        y0, x0, y1, x1 = inst.bbox
        py0, px0, py1, px1 = max(y0 - pad, 0), max(x0 - pad, 0), min(y1 + pad, h), min(x1 + pad, w)
        mask = np.zeros((py1 - py0, px1 - px0), bool)
        mask[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0] = inst.mask
        ring = ndimage.binary_dilation(mask, iterations=3 if kind == "A" else 1) & ~mask
        region = img[py0:py1, px0:px1]
        region[mask] -= 18 if kind == "A" else 7
        region[ring] += 45 if kind == "A" else 14
    for parts in somata:
        inst = rasterize_polygon(parts, shape)
        region = img[inst.slices]
        region[inst.mask] -= 22
        core = ndimage.binary_erosion(inst.mask, iterations=max(2, min(inst.mask.shape) // 5))
        region[core] -= 10
    img = ndimage.gaussian_filter(img, 1.2)
    img += rng.normal(0, 4, size=shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _image(rng: np.random.Generator, shape, n_cells: int, typed: bool, image_id: int, next_ann: int):
    h, w = shape
    frame = box(0, 0, w, h)
    n_clusters = max(1, n_cells // 25)
    centres = rng.uniform((0, 0), (w, h), (n_clusters, 2))
    cells, somata, cell_anns, soma_anns = [], [], [], []
    for _ in range(n_cells):
        if rng.random() < 0.6:
            cx, cy = centres[rng.integers(n_clusters)] + rng.normal(0, min(h, w) / 18, 2)
        else:
            cx, cy = rng.uniform((0, 0), (w, h))
        kind, cell, soma = _cell(rng, cx, cy)
        parts = _clip(cell, frame)
        if rng.random() < 0.04 and parts:  # a detached protrusion: one annotation, two parts
            angle = rng.uniform(0, 2 * np.pi)
            reach = np.max(np.hypot(cell[:, 0] - cx, cell[:, 1] - cy)) + 12
            t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
            bud = np.stack([cx + reach * np.cos(angle) + 7 * np.cos(t), cy + reach * np.sin(angle) + 6 * np.sin(t)], 1)
            parts += _clip(bud, frame)
        if not parts or sum(shapely.Polygon(p).area for p in parts) < _MIN_AREA:
            continue
        if any(polygon_problem(p, shape) for p in parts):
            continue
        cells.append((kind, parts))
        category = ({"A": 1, "B": 2}[kind]) if typed else 1
        cell_anns.append(_annotation(next_ann, image_id, category, parts))
        next_ann += 1
        if typed and rng.random() < 0.95:
            soma_parts = _clip(soma, frame)
            if soma_parts and sum(shapely.Polygon(p).area for p in soma_parts) >= _MIN_AREA:
                somata.append(soma_parts)
                soma_anns.append(soma_parts)
    soma_json = []
    for parts in soma_anns:
        soma_json.append(_annotation(next_ann, image_id, 3, parts))
        next_ann += 1
    return _render(shape, rng, cells, somata), cell_anns + soma_json, next_ann


def synth_glioma_c6(
    out: str | Path,
    *,
    n_images: int,
    seed: int = 0,
    shape: tuple[int, int] = (1944, 2592),
    cells_per_image: int = 180,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write a synthetic Glioma C6 dataset into ``out/dataset`` and return counts per split.

    Deterministic for a given seed. ``progress`` is called with 1 after each image.
    """
    counts = split_counts(n_images)
    summary = {}
    with staged_dir(out, overwrite=overwrite) as tmp:
        for split_index, (split, count) in enumerate(counts.items()):
            if not count:
                continue
            folder = tmp / "dataset" / _FOLDERS[split]
            (folder / "images").mkdir(parents=True)
            typed = split != "gen"
            images, annotations, next_ann = [], [], 1
            for k in range(count):
                rng = np.random.default_rng([seed, split_index, k])
                mean = cells_per_image if typed else int(cells_per_image * 0.7)
                n_cells = int(rng.poisson(mean))
                file_name = f"{'spec_' if typed else ''}{split}_{k:03d}.tif"
                pixels, anns, next_ann = _image(rng, shape, n_cells, typed, k + 1, next_ann)
                tifffile.imwrite(folder / "images" / file_name, pixels, compression="zlib")
                images.append({"id": k + 1, "file_name": file_name, "height": shape[0], "width": shape[1]})
                annotations.extend(anns)
                if progress is not None:
                    progress(1)
            coco = {
                "info": {"description": "cellbench synthetic Glioma C6", "seed": seed},
                "images": images,
                "annotations": annotations,
                "categories": _SPEC_CATEGORIES if typed else _GEN_CATEGORIES,
            }
            (folder / f"anno_{split}.json").write_text(json.dumps(coco))
            summary[split] = {"n_images": count, "n_annotations": len(annotations)}
    return summary
