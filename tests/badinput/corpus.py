"""A corpus of bad inputs, written at test time (no binary files are kept in the repository).

Every case writes a small dataset into a folder in which exactly one thing is
wrong, and says which file is wrong and what a good error message calls the
problem. The datasets are:

- ``data/``: the ``folder`` layout (``images/x.tif`` + ``masks/x.tif``), two
  24 x 32 images ``a`` and ``b`` with two disks each;
- ``coco/``: the same two images as COCO (``annotations.json`` + ``images/``);
- ``model/``: a watershed model directory (copied from one trained once).

A case's ``kind`` says which of them holds the bad file, and so which commands
read it (:data:`COMMANDS`).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import pickle
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

SHAPE = (24, 32)
FAST_WATERSHED = ("sigmas: [1.0]\nthreshold_scales: [1.0]\ndistance_sigmas: [1.0]\n"
                  "min_distance_fractions: [0.5]\ntiling: {tile: 0, overlap: 0}\n")


# ---------------------------------------------------------------- good data


def good_labels(seed: int) -> np.ndarray:
    """Two disks of radius 5 whose centres move with ``seed``."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    labels = np.zeros(SHAPE, np.uint16)
    for k, (r, c) in enumerate(((8, 8 + seed), (15, 22 - seed)), start=1):
        labels[(yy - r) ** 2 + (xx - c) ** 2 <= 25] = k
    return labels


def good_image(labels: np.ndarray) -> np.ndarray:
    return (30 + 180 * (labels > 0)).astype(np.uint8)


def write_folder_dataset(root: Path) -> Path:
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate("ab"):
        labels = good_labels(seed)
        tifffile.imwrite(root / "images" / f"{name}.tif", good_image(labels))
        tifffile.imwrite(root / "masks" / f"{name}.tif", labels)
    return root


def _polygon(r: int, c: int) -> list[float]:
    return [c - 4, r - 4, c + 4, r - 4, c + 4, r + 4, c - 4, r + 4]


def good_coco_dict() -> dict:
    images, annotations = [], []
    for image_id, name in enumerate("ab", start=1):
        images.append({"id": image_id, "file_name": f"{name}.tif", "height": SHAPE[0], "width": SHAPE[1]})
        for r, c in ((8, 8), (15, 22)):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "segmentation": [_polygon(r, c)], "area": 64, "bbox": [c - 4, r - 4, 8, 8],
                                "iscrowd": 0, "score": 0.9})
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cell"}]}


def write_coco_dataset(root: Path, data: dict | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate("ab"):
        tifffile.imwrite(root / "images" / f"{name}.tif", good_image(good_labels(seed)))
    write_json(root / "annotations.json", good_coco_dict() if data is None else data)
    return root


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data))  # json writes NaN as a bare NaN, as some tools do


# ---------------------------------------------------------------- bad bytes


def tiff_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="minisblack")
    return buf.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking 8-bit grey PNG whose header claims ``width x height`` pixels (a few dozen bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def bomb_tiff(width: int = 100_000, height: int = 100_000) -> bytes:
    """A classic little-endian 8-bit grey TIFF whose header claims ``width x height`` pixels, with 16 bytes of data."""
    entries = [  # tag, type (3 SHORT, 4 LONG), value
        (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
        (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, 16),
    ]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\0" * 16


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Bad:
    """What a case wrote: the file a good message names, and words that name the problem."""

    path: Path
    problem: str  # a regular expression, searched ignoring case
    patch: Callable | None = None  # called with pytest's monkeypatch just before the command runs
    out: str = "out"               # where the command writes, relative to the corpus folder
    also: tuple[Path, ...] = ()    # other files a message may name instead of ``path``


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "labels", "image", "coco", "model", "output"
    build: Callable[[Path], Bad]
    commands: tuple[str, ...] | None = None  # default: COMMANDS[kind]
    skip_reason: Callable[[Path], str | None] = field(default=lambda root: None)


# ---- label images: data/masks/b.tif is bad


def _mask(root: Path, data: bytes, name: str = "b.tif") -> Path:
    path = root / "data" / "masks" / name
    (root / "data" / "masks" / "b.tif").unlink()
    path.write_bytes(data)
    return path


def _label_case(name: str, problem: str, data: Callable[[], bytes], file: str = "b.tif") -> Case:
    return Case(name, "labels", lambda root: Bad(_mask(root, data(), file), problem))


def _labels_b() -> np.ndarray:
    return good_labels(1)


LABEL_CASES = [
    _label_case("labels-zero-byte-tiff", "not a TIFF", lambda: b""),
    _label_case("labels-zero-byte-png", "corrupt", lambda: b"", "b.png"),
    _label_case("labels-truncated-tiff", "failed to read", lambda: truncated(tiff_bytes(_labels_b()))),
    _label_case("labels-truncated-png", "corrupt", lambda: truncated(png_bytes(_labels_b().astype(np.uint8))), "b.png"),
    _label_case("labels-text-as-tiff", "not a TIFF", lambda: b"these are not pixels\n"),
    _label_case("labels-rgb-png", "2-D",
                lambda: png_bytes(np.stack([_labels_b().astype(np.uint8)] * 3, axis=-1)), "b.png"),
    _label_case("labels-float", "non-integer dtype float32", lambda: tiff_bytes(_labels_b().astype(np.float32))),
    _label_case("labels-int16-negative", "negative", lambda: tiff_bytes(-_labels_b().astype(np.int16))),
    _label_case("labels-3d-stack", "2-D", lambda: tiff_bytes(np.stack([_labels_b()] * 3))),
    _label_case("labels-bomb-png", "decompression bomb", lambda: bomb_png(), "b.png"),
    _label_case("labels-bomb-tiff", "decompression bomb", lambda: bomb_tiff()),
]


def _shape_mismatch(root: Path) -> Bad:
    """A mask two rows shorter than its image: the layouts name the image, evaluate names the mask."""
    labels = _mask(root, tiff_bytes(_labels_b()[:-2]))
    return Bad(labels, "24 x 32.*22 x 32|22 x 32.*24 x 32", also=(root / "data" / "images" / "b.tif",))


LABEL_CASES.append(Case("labels-shape-mismatch", "labels", _shape_mismatch))

# ---- images: data/images/b.tif is bad (its mask is good)


def _image(root: Path, data: bytes) -> Path:
    path = root / "data" / "images" / "b.tif"
    path.write_bytes(data)
    return path


def _image_case(name: str, problem: str, data: Callable[[], bytes], commands=None) -> Case:
    return Case(name, "image", lambda root: Bad(_image(root, data()), problem), commands)


IMAGE_CASES = [
    _image_case("image-zero-byte-tiff", "not a TIFF", lambda: b""),
    # only the header is read by `data info`, so a truncated pixel block shows when pixels are needed
    _image_case("image-truncated-tiff", "failed to read", lambda: truncated(tiff_bytes(good_image(_labels_b()))),
                ("predict", "train")),
    _image_case("image-bomb-tiff", "decompression bomb", lambda: bomb_tiff()),
    _image_case("image-png-named-tiff", "not a TIFF", lambda: png_bytes(good_image(_labels_b()))),
]


def _bomb_png_image(root: Path) -> Bad:
    (root / "data" / "images" / "b.tif").unlink()
    path = root / "data" / "images" / "b.png"
    path.write_bytes(bomb_png())
    return Bad(path, "decompression bomb")


IMAGE_CASES.append(Case("image-bomb-png", "image", _bomb_png_image))

# ---- COCO json: coco/annotations.json is bad


def _coco(edit: Callable[[dict], object], problem: str) -> Callable[[Path], Bad]:
    def build(root: Path) -> Bad:
        data = good_coco_dict()
        replaced = edit(data)
        path = root / "coco" / "annotations.json"
        write_json(path, data if replaced is None else replaced)
        return Bad(path, problem)

    return build


def _coco_bytes(data: bytes, problem: str) -> Callable[[Path], Bad]:
    def build(root: Path) -> Bad:
        path = root / "coco" / "annotations.json"
        path.write_bytes(data)
        return Bad(path, problem)

    return build


def _set(obj: dict, key: str, value) -> None:
    obj[key] = value


def _self_crossing(data: dict) -> None:
    data["annotations"][0]["segmentation"] = [[4, 4, 12, 12, 12, 4, 4, 12]]


def _duplicate_image_id(data: dict) -> None:
    data["images"][1]["id"] = data["images"][0]["id"]


def _duplicate_annotation_id(data: dict) -> None:
    data["annotations"][1]["id"] = data["annotations"][0]["id"]


def _image_file_missing(root: Path) -> Bad:
    data = good_coco_dict()
    data["images"][1]["file_name"] = "gone.tif"
    path = root / "coco" / "annotations.json"
    write_json(path, data)
    return Bad(path, "not found")


def _rle(counts) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["annotations"][0]["segmentation"] = {"size": list(SHAPE), "counts": counts}

    return edit


COCO_CASES = [
    Case("coco-not-json", "coco", _coco_bytes(b"{\"images\": [", "not valid JSON")),
    Case("coco-not-utf8", "coco",
         _coco_bytes(json.dumps(good_coco_dict()).replace("cell", "c\u00e9ll").encode("latin-1"), "utf-8")),
    # evaluate reads a list as COCO results, which need COCO ground truth and image ids
    Case("coco-top-level-list", "coco", _coco(lambda d: [d], "must be an object|results list|no image_id")),
    Case("coco-missing-images", "coco", _coco(lambda d: d.pop("images") and None, "'images'")),
    Case("coco-missing-categories", "coco", _coco(lambda d: d.pop("categories") and None, "'categories'")),
    Case("coco-images-not-a-list", "coco", _coco(lambda d: _set(d, "images", 5), "'images' must be a list")),
    Case("coco-annotations-a-string", "coco", _coco(lambda d: _set(d, "annotations", "none"),
                                                    "'annotations' must be a list")),
    Case("coco-image-entry-a-number", "coco", _coco(lambda d: _set(d, "images", [5, 6]), "image entry")),
    Case("coco-image-height-text", "coco", _coco(lambda d: _set(d["images"][0], "height", "tall"), "height")),
    Case("coco-image-id-a-list", "coco", _coco(lambda d: _set(d["images"][0], "id", [1]), "id")),
    Case("coco-image-missing-file-name", "coco", _coco(lambda d: d["images"][0].pop("file_name") and None,
                                                       "file_name")),
    Case("coco-category-id-a-list", "coco", _coco(lambda d: _set(d["categories"][0], "id", [1]), "categor")),
    Case("coco-category-without-name", "coco", _coco(lambda d: d["categories"][0].pop("name") and None, "name")),
    Case("coco-annotation-a-number", "coco", _coco(lambda d: _set(d, "annotations", [7]), "annotation")),
    Case("coco-segmentation-text", "coco", _coco(lambda d: _set(d["annotations"][0], "segmentation", "blob"),
                                                 "neither polygons nor RLE")),
    Case("coco-polygon-text-coordinates", "coco",
         _coco(lambda d: _set(d["annotations"][0], "segmentation", [["a", "b", "c", "d", "e", "f"]]), "polygon")),
    Case("coco-polygon-odd-length", "coco",
         _coco(lambda d: _set(d["annotations"][0], "segmentation", [[1, 1, 5, 1, 5]]), "x, y pairs")),
    Case("coco-polygon-nan", "coco",
         _coco(lambda d: _set(d["annotations"][0], "segmentation", [[1, 1, math.nan, 1, 5, 5, 1, 5]]), "not finite")),
    Case("coco-polygon-self-crossing", "coco", _coco(_self_crossing, "self-intersecting")),
    Case("coco-polygon-outside", "coco",
         _coco(lambda d: _set(d["annotations"][0], "segmentation", [[1, 1, 500, 1, 500, 5, 1, 5]]), "outside")),
    Case("coco-rle-wrong-size", "coco",
         _coco(lambda d: _set(d["annotations"][0], "segmentation", {"size": [5, 5], "counts": [0, 25]}), "RLE size")),
    Case("coco-rle-counts-too-long", "coco", _coco(_rle([10, 5000]), "RLE")),
    Case("coco-rle-counts-negative", "coco", _coco(_rle([10, -5, 30]), "RLE")),
    Case("coco-rle-counts-a-number", "coco", _coco(_rle(17), "RLE")),
    Case("coco-duplicate-image-id", "coco", _coco(_duplicate_image_id, "duplicate")),
    Case("coco-duplicate-annotation-id", "coco", _coco(_duplicate_annotation_id, "duplicate")),
    Case("coco-annotation-of-missing-image", "coco",
         _coco(lambda d: _set(d["annotations"][0], "image_id", 99), "image_id 99")),
    Case("coco-annotation-unknown-category", "coco",
         _coco(lambda d: _set(d["annotations"][0], "category_id", 42), "category_id 42")),
    Case("coco-score-text", "coco", _coco(lambda d: _set(d["annotations"][0], "score", "high"), "score")),
    Case("coco-image-file-missing", "coco", _image_file_missing, ("info", "convert", "train")),
]

# ---- model directories: model/ is bad (predict reads it)


def _model_json(root: Path) -> tuple[Path, dict]:
    path = root / "model" / "model.json"
    return path, json.loads(path.read_text())


def _pickled_weights(root: Path) -> Bad:
    """The watershed parameters file replaced by a pickle, its checksum updated to match."""
    from cellbench.files import file_digest

    path, record = _model_json(root)
    (name,) = record["weights"]
    weights = root / "model" / "weights" / name
    weights.write_bytes(pickle.dumps({"bright": True, "sigma": 0.0}))
    record["weights"][name] = file_digest(weights)
    write_json(path, record)
    return Bad(weights, "pickle")


def _unlisted_pickle(root: Path) -> Bad:
    path = root / "model" / "weights" / "extra.pkl"
    path.write_bytes(pickle.dumps(os.getcwd))
    return Bad(path, "not listed")


def _weights_outside(root: Path) -> Bad:
    path, record = _model_json(root)
    record["weights"]["../../data/images/a.tif"] = "0" * 64
    write_json(path, record)
    return Bad(path, "outside")


def _model_edit(edit: Callable[[dict], None], problem: str) -> Callable[[Path], Bad]:
    def build(root: Path) -> Bad:
        path, record = _model_json(root)
        edit(record)
        write_json(path, record)
        return Bad(path, problem)

    return build


def _model_not_json(root: Path) -> Bad:
    path = root / "model" / "model.json"
    path.write_bytes(b"\x80\x04not json")
    return Bad(path, "corrupt model file")


MODEL_CASES = [
    Case("model-pickled-weights", "model", _pickled_weights),
    Case("model-unlisted-pickle", "model", _unlisted_pickle),
    Case("model-weights-path-outside", "model", _weights_outside),
    Case("model-json-not-json", "model", _model_not_json),
    Case("model-weights-a-list", "model", _model_edit(lambda r: _set(r, "weights", []), "weights")),
    Case("model-config-a-string", "model", _model_edit(lambda r: _set(r, "config", "fast"), "config")),
    Case("model-method-a-number", "model", _model_edit(lambda r: _set(r, "method", 5), "method")),
]

# ---- outputs: the inputs are good, writing fails


def _out_under_file(root: Path) -> Bad:
    blocker = root / "blocker"
    blocker.write_text("a file, not a folder\n")
    return Bad(blocker, "not a folder", out="blocker/out")


def _out_is_file(root: Path) -> Bad:
    path = root / "out"
    path.write_text("keep me\n")
    return Bad(path, "not a folder")


def _out_not_empty(root: Path) -> Bad:
    path = root / "out"
    path.mkdir()
    (path / "keep.txt").write_text("keep me\n")
    return Bad(path, "not empty")


def deny_writes(monkeypatch, folder: Path, code: int) -> None:
    """Make writing under ``folder`` fail with ``code``, whoever runs the test (root ignores permission bits).

    EACCES (a read-only folder): creating files or folders and renaming into it fail.
    ENOSPC (a full disk): folders can still be made, but no file can be created or renamed into it.
    """
    import builtins

    folder_s = os.path.realpath(folder) + os.sep

    def inside(path) -> bool:
        return not isinstance(path, int) and os.path.realpath(os.fsdecode(path)).startswith(folder_s)

    def guard(real, is_write):
        def guarded(path, *args, **kwargs):
            if inside(path) and is_write(*args, **kwargs):
                raise OSError(code, os.strerror(code), os.fsdecode(path))
            return real(path, *args, **kwargs)

        return guarded

    def write_mode(mode="r", *args, **kwargs) -> bool:
        return any(c in mode for c in "wax+")

    def write_flags(flags, *args, **kwargs) -> bool:
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    def guard_rename(real):
        def guarded(src, dst, *args, **kwargs):
            if inside(dst):
                raise OSError(code, os.strerror(code), os.fsdecode(dst))
            return real(src, dst, *args, **kwargs)

        return guarded

    opener = guard(builtins.open, write_mode)
    monkeypatch.setattr(builtins, "open", opener)
    monkeypatch.setattr(io, "open", opener)
    monkeypatch.setattr(os, "open", guard(os.open, write_flags))
    monkeypatch.setattr(os, "rename", guard_rename(os.rename))
    monkeypatch.setattr(os, "replace", guard_rename(os.replace))
    if code == errno.EACCES:
        monkeypatch.setattr(os, "mkdir", guard(os.mkdir, lambda *a, **k: True))


def _read_only(root: Path) -> Bad:
    folder = root / "readonly"
    folder.mkdir()
    return Bad(folder, "permission denied", patch=lambda mp: deny_writes(mp, folder, errno.EACCES), out="readonly/out")


def _full_disk(root: Path) -> Bad:
    folder = root / "full"
    folder.mkdir()
    return Bad(folder, "no space left", patch=lambda mp: deny_writes(mp, folder, errno.ENOSPC), out="full/out")


OUTPUT_CASES = [
    Case("output-under-a-file", "output", _out_under_file),
    Case("output-is-a-file", "output", _out_is_file),
    Case("output-not-empty", "output", _out_not_empty, ("convert", "predict", "train")),
    Case("output-read-only", "output", _read_only),
    Case("output-full-disk", "output", _full_disk),
]

# ---- paths: symlink loops, spaces, bytes that are not UTF-8


def _symlink_loop_mask(root: Path) -> Bad:
    path = root / "data" / "masks" / "b.tif"
    path.unlink()
    path.symlink_to(path.name)  # b.tif -> b.tif
    return Bad(path, "symbolic link")


def _symlink_loop_dataset(root: Path) -> Bad:
    shutil.rmtree(root / "data")
    (root / "data").symlink_to("data")
    return Bad(root / "data", "symbolic link")


def _space_path(root: Path) -> Bad:
    for folder in ("images", "masks"):
        (root / "data" / folder / "b.tif").rename(root / "data" / folder / "b c.tif")
    path = root / "data" / "masks" / "b c.tif"
    path.write_bytes(b"")
    return Bad(path, "not a TIFF")


def _non_utf8_mask(root: Path) -> Bad:
    masks = os.fsencode(root / "data" / "masks")
    images = os.fsencode(root / "data" / "images")
    os.rename(os.path.join(images, b"b.tif"), os.path.join(images, b"b\xff.tif"))
    os.remove(os.path.join(masks, b"b.tif"))
    bad = os.path.join(masks, b"b\xff.tif")
    with open(bad, "wb") as fh:
        fh.write(tiff_bytes(good_labels(1).astype(np.float32)))
    return Bad(Path(os.fsdecode(bad)), "non-integer dtype")


def non_utf8_unsupported(root: Path) -> str | None:
    probe = os.path.join(os.fsencode(root), b"probe\xff")
    try:
        with open(probe, "wb"):
            pass
    except (OSError, UnicodeError):
        return "this file system does not take file names that are not UTF-8"
    os.remove(probe)
    return None


PATH_CASES = [
    Case("path-symlink-loop-mask", "labels", _symlink_loop_mask, ("info", "convert", "train", "evaluate-gt")),
    Case("path-symlink-loop-dataset", "labels", _symlink_loop_dataset, ("info", "convert", "train", "evaluate-gt")),
    Case("path-with-space", "labels", _space_path, ("info", "convert", "train", "evaluate-gt")),
    Case("path-not-utf8", "labels", _non_utf8_mask, ("info", "convert", "train", "evaluate-gt"),
         skip_reason=non_utf8_unsupported),
]

CASES = LABEL_CASES + IMAGE_CASES + COCO_CASES + MODEL_CASES + OUTPUT_CASES + PATH_CASES

COMMANDS = {
    "labels": ("info", "convert", "train", "evaluate-gt", "evaluate-pred"),
    "image": ("info", "predict", "train"),
    "coco": ("info", "convert", "train", "evaluate-gt", "evaluate-pred"),
    "model": ("predict",),
    "output": ("convert", "predict", "train", "evaluate"),
}


def argv(command: str, kind: str, root: Path, out: str = "out") -> list[str]:
    """The command line of ``command`` reading the dataset of ``kind`` under ``root``, writing to ``root/out``."""
    layout = ["--layout", "coco"] if kind == "coco" else ["--layout", "folder"]
    data = str(root / ("coco" if kind == "coco" else "data"))
    gt_good, pred_good = str(root / "good" / "masks"), str(root / "good" / "masks")
    if kind == "coco":
        gt_good = pred_good = str(root / "good-coco" / "annotations.json")
        bad = str(root / "coco" / "annotations.json")
    else:
        bad = str(root / "data" / "masks")
    out = str(root / out)
    if command == "info":
        return ["data", "info", data, *layout]
    if command == "convert":
        return ["data", "convert", data, *layout, "--to", "coco", "--out", out]
    if command == "train":
        return ["train", "watershed", "--data", data, *layout, "--config", str(root / "fast.yaml"), "--out", out]
    if command == "predict":
        return ["predict", str(root / "model"), "--images", str(root / "data" / "images"), "--out", out]
    if command == "evaluate-gt":
        return ["evaluate", "--gt", bad, "--pred", pred_good, "--json", str(Path(out) / "scores.json")]
    if command == "evaluate-pred":
        return ["evaluate", "--gt", gt_good, "--pred", bad, "--json", str(Path(out) / "scores.json")]
    if command == "evaluate":
        return ["evaluate", "--gt", gt_good, "--pred", pred_good, "--json", str(Path(out) / "scores.json")]
    raise ValueError(command)
