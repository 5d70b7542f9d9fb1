"""A synthetic dataset in the exact Glioma C6 layout, of any size.

Phase-contrast-like 8-bit images (2592 x 1944 by default) of overlapping glioma
cells, drawn after the paper's description of the real ones (section 3.2):

- type A, early growth, loosely attached and convex: spheroid (small, round,
  with the distinct bright phase-contrast halo) or spindle-shaped (elongated,
  with thin protrusions at its ends);
- type B, later growth, flat and spread: large irregular disks of low contrast
  with a granular texture and a faint edge;
- a soma in each cell: its darker centre, with a visible nucleus.

Cells are semi-transparent: where two overlap their contrasts add, as in the
real images. Cells gather in clusters, so many overlap. ``scale`` draws the
same cells at another pixel size (0.5: a camera binned 2 x 2), so a small image
can hold a real field of view. The gen split, as in the real dataset, is
imaged under varying conditions: each of its images draws its own contrast,
brightness, noise, magnification and share of type B cells.

Annotations are COCO polygons as in the real dataset: spec splits have
categories ``Cell type A`` / ``Cell type B`` (supercategory ``cell``) and
``Soma`` (supercategory ``cell_part``); the gen part has one untyped ``Cell``
category. Cells cut by the image border, and a few cells with a detached
protrusion, are multi-part polygons: still one annotation each. Images are
split 30 / 4 / 11 / 30 (train / valid / test / gen) like the real dataset,
unless ``images_per_split`` says otherwise.

What the real images have and these do not: real optics (the halo here is an
exponential ring, not the phase-contrast point-spread function), debris, dust
and out-of-focus cells, mitotic figures, cells whose outline an expert could
only guess, and the real shape statistics (these shapes are ellipses with
harmonics).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import tifffile
from scipy import ndimage
from shapely.geometry import LineString, box

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
_MIN_AREA = 89.0  # the real dataset has no polygon under 89 px (at scale 1)


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


@dataclass(frozen=True)
class _Conditions:
    """How one image is taken: the spec split's are fixed, the gen split's vary per image."""

    contrast: float = 1.0
    brightness: float = 0.0
    noise: float = 4.0
    zoom: float = 1.0
    share_b: float = 0.6

    @classmethod
    def varied(cls, rng: np.random.Generator) -> _Conditions:
        return cls(contrast=float(rng.uniform(0.75, 1.25)), brightness=float(rng.uniform(-15, 15)),
                   noise=float(rng.uniform(3, 6)), zoom=float(rng.uniform(0.9, 1.25)),
                   share_b=float(rng.uniform(0.5, 0.8)))


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


def _protrusions(rng, outline: np.ndarray, a: float, angle: float, cx: float, cy: float, scale: float) -> np.ndarray:
    """A spindle's outline with a thin process grown from one or both of its ends."""
    cell = shapely.Polygon(outline)
    for end in rng.permutation([0.0, np.pi])[: rng.integers(1, 3)]:
        direction = angle + end + rng.normal(0, 0.25)
        length = a * rng.uniform(0.4, 0.9)
        start = 0.8 * a
        bend = rng.normal(0, 0.3)
        pts = [(cx + (start + t * length) * np.cos(direction + bend * t),
                cy + (start + t * length) * np.sin(direction + bend * t)) for t in np.linspace(0, 1, 6)]
        pts = [(cx + 0.5 * a * np.cos(direction), cy + 0.5 * a * np.sin(direction)), *pts]
        cell = cell.union(LineString(pts).buffer(max(1.0, rng.uniform(1.5, 2.5) * scale), quad_segs=3))
    if not isinstance(cell, shapely.Polygon):  # the union stays one piece; keep the plain outline if not
        return outline
    return np.asarray(cell.simplify(0.3 * scale).exterior.coords)[:-1]


def _cell(rng: np.random.Generator, cx: float, cy: float, *, scale: float, share_b: float):
    """(kind, cell outline, soma outline) in image coordinates; sizes are at the real pixel size times ``scale``."""
    kind = "B" if rng.random() < share_b else "A"
    spindle = False
    if kind == "A" and rng.random() < 0.5:  # spheroid
        r = rng.uniform(16, 22)
        a, b, wobble = r, r * rng.uniform(0.9, 1.0), 0.08
    elif kind == "A":
        a, b, wobble, spindle = rng.uniform(35, 55), rng.uniform(11, 15), 0.1, True
    else:
        r = rng.uniform(35, 60)
        a, b, wobble = r * rng.uniform(1.0, 1.6), r, 0.3
    a, b = a * scale, b * scale
    angle = rng.uniform(0, np.pi)
    theta, radius = _star(rng, a, b, wobble)
    cell = _rotate(radius * np.cos(theta), radius * np.sin(theta), angle, cx, cy)
    if spindle:
        cell = _protrusions(rng, cell, a, angle, cx, cy, scale)
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


#: Contrast of each kind of object (grey levels at contrast 1): the interior's darkening, the darker rim
#: just inside the border, the bright halo just outside it, and the widths (px at scale 1) they fall off over.
_LOOK = {
    "A": {"inside": 12.0, "rim": 14.0, "halo": 48.0, "rim_px": 2.5, "halo_px": 2.5, "texture": 2.0},
    "B": {"inside": 7.0, "rim": 5.0, "halo": 14.0, "rim_px": 2.0, "halo_px": 1.2, "texture": 5.0},
}


def _window(parts, shape, pad: int):
    """A cell's mask in a window padded by ``pad`` px, and the window's slices."""
    h, w = shape
    inst = rasterize_polygon(parts, shape)
    y0, x0, y1, x1 = inst.bbox
    py0, px0, py1, px1 = max(y0 - pad, 0), max(x0 - pad, 0), min(y1 + pad, h), min(x1 + pad, w)
    mask = np.zeros((py1 - py0, px1 - px0), bool)
    mask[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0] = inst.mask
    return mask, (slice(py0, py1), slice(px0, px1))


def _render(shape, rng, cells, somata, *, scale: float, cond: _Conditions) -> np.ndarray:
    """Phase-contrast-like image: haloed A cells, faint textured B cells, dark somata with nuclei."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gy, gx = rng.uniform(-12, 12, 2)
    background = 118 + gy * (yy / h - 0.5) + gx * (xx / w - 0.5) - 8 * ((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2)
    mottle = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 20 * scale)
    background += 3 * mottle / max(float(mottle.std()), 1e-6)
    contrast = np.zeros(shape, np.float32)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.5 * scale)
    texture /= max(float(texture.std()), 1e-6)
    for kind, parts in cells:
        look = _LOOK[kind]
        halo_px, rim_px = look["halo_px"] * scale, look["rim_px"] * scale
        mask, win = _window(parts, shape, pad=int(np.ceil(4 * halo_px)) + 1)
        outside = ndimage.distance_transform_edt(~mask)
        inside = ndimage.distance_transform_edt(mask)
        region = contrast[win]
        region += np.where(mask, -look["inside"] - look["rim"] * np.exp(-(inside - 1) / rim_px)
                           + look["texture"] * texture[win], look["halo"] * np.exp(-(outside - 1) / halo_px))
    for parts in somata:
        mask, win = _window(parts, shape, pad=0)
        nucleus = ndimage.binary_erosion(mask, iterations=max(2, int(min(mask.shape) // 5)))
        contrast[win][mask] -= 20
        contrast[win][nucleus] += 8  # the nucleus shows as a paler oval inside the dark soma ...
        edge = nucleus & ~ndimage.binary_erosion(nucleus, iterations=max(1, round(1.5 * scale)))
        contrast[win][edge] -= 12  # ... with a dark envelope
    img = background + cond.brightness + cond.contrast * contrast
    img = ndimage.gaussian_filter(img, max(0.6, 1.2 * scale))
    img += rng.normal(0, cond.noise, size=shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _image(rng: np.random.Generator, shape, n_cells: int, typed: bool, image_id: int, next_ann: int, *,
           scale: float, cond: _Conditions):
    h, w = shape
    scale = scale * cond.zoom
    frame = box(0, 0, w, h)
    min_area = _MIN_AREA * scale**2
    n_clusters = max(1, n_cells // 25)
    centres = rng.uniform((0, 0), (w, h), (n_clusters, 2))
    cells, somata, cell_anns, soma_anns = [], [], [], []
    for _ in range(n_cells):
        if rng.random() < 0.6:
            cx, cy = centres[rng.integers(n_clusters)] + rng.normal(0, 108 * scale, 2)
        else:
            cx, cy = rng.uniform((0, 0), (w, h))
        kind, cell, soma = _cell(rng, cx, cy, scale=scale, share_b=cond.share_b)
        parts = _clip(cell, frame)
        if rng.random() < 0.04 and parts:  # a detached protrusion: one annotation, two parts
            angle = rng.uniform(0, 2 * np.pi)
            reach = np.max(np.hypot(cell[:, 0] - cx, cell[:, 1] - cy)) + 12 * scale
            t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
            bud = np.stack([cx + reach * np.cos(angle) + 7 * scale * np.cos(t),
                            cy + reach * np.sin(angle) + 6 * scale * np.sin(t)], 1)
            parts += _clip(bud, frame)
        if not parts or sum(shapely.Polygon(p).area for p in parts) < min_area:
            continue
        if any(polygon_problem(p, shape) for p in parts):
            continue
        cells.append((kind, parts))
        category = ({"A": 1, "B": 2}[kind]) if typed else 1
        cell_anns.append(_annotation(next_ann, image_id, category, parts))
        next_ann += 1
        soma_parts = _clip(soma, frame)
        if rng.random() < 0.95 and soma_parts and sum(shapely.Polygon(p).area for p in soma_parts) >= min_area:
            somata.append(soma_parts)
            if typed:
                soma_anns.append(soma_parts)
    soma_json = []
    for parts in soma_anns:
        soma_json.append(_annotation(next_ann, image_id, 3, parts))
        next_ann += 1
    return _render(shape, rng, cells, somata, scale=scale, cond=cond), cell_anns + soma_json, next_ann


def synth_glioma_c6(
    out: str | Path,
    *,
    n_images: int | None = None,
    images_per_split: Mapping[str, int] | None = None,
    seed: int = 0,
    shape: tuple[int, int] = (1944, 2592),
    cells_per_image: int = 180,
    scale: float = 1.0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write a synthetic Glioma C6 dataset into ``out/dataset`` and return counts per split.

    Give either ``n_images`` (split in the real proportions, :func:`split_counts`)
    or ``images_per_split`` (``{"train": 4, "test": 5, ...}``; splits left out
    get none). ``cells_per_image`` is the mean count of a spec image (gen: 70 %
    of it, as in the real dataset); ``scale`` is the pixel size relative to the
    real images (0.5 draws every cell at half its size). Deterministic for a
    given seed. ``progress`` is called with 1 after each image.
    """
    if (n_images is None) == (images_per_split is None):
        raise ValueError("give either n_images or images_per_split")
    if images_per_split is not None:
        unknown = set(images_per_split) - set(SPLIT_SHARES)
        if unknown or any(int(v) < 0 for v in images_per_split.values()) or not any(images_per_split.values()):
            raise ValueError(f"images_per_split needs counts >= 0 for {', '.join(SPLIT_SHARES)}, got {images_per_split}")
        counts = {k: int(images_per_split.get(k, 0)) for k in SPLIT_SHARES}
    else:
        counts = split_counts(n_images)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
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
                cond = _Conditions() if typed else _Conditions.varied(rng)
                mean = cells_per_image if typed else int(cells_per_image * 0.7)
                n_cells = int(rng.poisson(mean))
                file_name = f"{'spec_' if typed else ''}{split}_{k:03d}.tif"
                pixels, anns, next_ann = _image(rng, shape, n_cells, typed, k + 1, next_ann, scale=scale, cond=cond)
                tifffile.imwrite(folder / "images" / file_name, pixels, compression="zlib")
                images.append({"id": k + 1, "file_name": file_name, "height": shape[0], "width": shape[1]})
                annotations.extend(anns)
                if progress is not None:
                    progress(1)
            coco = {
                "info": {"description": "cellbench synthetic Glioma C6", "seed": seed, "scale": scale},
                "images": images,
                "annotations": annotations,
                "categories": _SPEC_CATEGORIES if typed else _GEN_CATEGORIES,
            }
            (folder / f"anno_{split}.json").write_text(json.dumps(coco))
            summary[split] = {"n_images": count, "n_annotations": len(annotations)}
    return summary
