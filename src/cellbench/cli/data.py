"""``cellbench data ...``: info, convert, synth, download."""

from __future__ import annotations

import argparse
import json
import sys

from cellbench.cli.unpack_options import add_unpack_options, unpack_limits
from cellbench.data import LAYOUTS, Dataset
from cellbench.data.layouts import read_with_options

# The registry is imported by the commands that use it: it brings the downloader (http.client).
from cellbench.instances import FLATTEN_NAMES, policy_from_name

# The writers, the generator (scipy, shapely) and tqdm are imported by the commands that use them:
# every `cellbench` command builds this parser, and `cellbench evaluate` should not pay for them.

__all__ = ["add_data_commands"]


def _shape(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 1944x2592, got {text!r}") from None
    return h, w


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="dataset folder or file, or the name of a downloaded dataset (cellbench data list)")
    p.add_argument("--layout", choices=list(LAYOUTS),
                   help="how the dataset is laid out (not needed for a registered dataset's name)")
    p.add_argument("--split", help="split to read (glioma-c6: train, valid, test, gen; folders: a sub-folder)")
    p.add_argument("--task", default="all", help="classes to keep (glioma-c6: cells, soma, type-a, type-b)")
    p.add_argument(
        "--invalid-polygons", choices=["raise", "skip", "keep"], default="raise",
        help="polygons outside the image or crossing themselves: stop (default), skip, or keep as drawn",
    )
    p.add_argument("--images", dest="image_dir", help="coco: folder holding the images, if not beside the json")
    p.add_argument("--channels", choices=["nuclear", "whole-cell", "dual"], default="dual",
                   help="tissuenet: image channels to use (default dual)")


def _read(args: argparse.Namespace) -> Dataset:
    return read_with_options(args.path, args.layout, split=args.split, task=args.task,
                             invalid=args.invalid_polygons, image_dir=args.image_dir, channels=args.channels,
                             progress=sys.stderr.isatty())


def _info(args: argparse.Namespace) -> int:
    summary = _read(args).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['layout']} dataset at {summary['root']}")
    print(f"  split {summary['split'] or 'all'}, task {summary['task']} (tasks: {', '.join(summary['tasks'])})")
    print(f"  {summary['n_images']} images, {summary['n_instances']} instances, "
          f"{summary['n_overlapping_instances']} overlapping another instance")
    for name, n in summary["per_class"].items():
        print(f"  {name:>14}: {n}")
    for split, counts in summary["per_split"].items():
        print(f"  split {split}: {counts['n_images']} images, {counts['n_instances']} instances")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from cellbench.data.export import write_dataset

    dataset = _read(args)
    policy = policy_from_name(args.flatten) if args.flatten else None
    manifest = write_dataset(
        dataset, args.out, args.to, policy=policy, with_images=args.with_images,
        overwrite=args.overwrite, progress=sys.stderr.isatty(),
    )
    flat = manifest["flatten"]["flatten_policy"] if manifest["flatten"] else "none (overlaps kept)"
    print(f"wrote {manifest['n_instances']} instances of {manifest['n_images']} images as {args.to} "
          f"to {args.out} (flatten: {flat})")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cellbench.data.synth import split_counts, synth_glioma_c6

    counts = split_counts(args.images)
    with tqdm(total=args.images, desc="synthesising", unit="image", disable=not sys.stderr.isatty()) as bar:
        summary = synth_glioma_c6(
            args.out, n_images=args.images, seed=args.seed, shape=args.shape,
            cells_per_image=args.cells_per_image, scale=args.scale, overwrite=args.overwrite, progress=bar.update,
        )
    print(f"wrote a synthetic Glioma C6 dataset to {args.out}/dataset: "
          + ", ".join(f"{k} {counts[k]} images / {v['n_annotations']} annotations" for k, v in summary.items()))
    return 0


def _download(args: argparse.Namespace) -> int:
    from cellbench.data.registered import download_registered
    from cellbench.data.registry import get_dataset

    entry = get_dataset(args.dataset)
    if not args.archive:
        urls = ", ".join(f.remote.url for f in entry.files) or f"the files of {entry.based_on}"
        print(f"downloading {entry.name} ({entry.size_hint or 'size not published'}, licence "
              f"{entry.licence or 'see its source'}) from {urls}", file=sys.stderr)
    path = download_registered(args.dataset, args.cache, archives=args.archive or (), progress=sys.stderr.isatty(),
                               limits=unpack_limits(args, "data"), allow_unverified=args.allow_unverified)
    print(path)
    return 0


def _list(args: argparse.Namespace) -> int:
    from cellbench.data.registry import DATASETS

    entries = [d.to_dict() for d in DATASETS.values()]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for d in entries:
        how = "by hand, then --archive" if d["manual"] else f"same download as {d['based_on']}" if d["based_on"] \
            else "downloads"
        print(f"{d['name']:32s} {d['modality'][:28]:28s} {d['objects'][:22]:22s} splits {', '.join(d['splits'])}; {how}")
    print("(cellbench data list --json: URLs, checksums, licences, citations, layouts)")
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="read, inspect, convert, synthesise and download datasets")
    cmds = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    info = cmds.add_parser("info", help="count images, instances per class and overlaps")
    _add_source(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)

    convert = cmds.add_parser("convert", help="write a dataset as label TIFF, COCO, ImageJ ROI or GeoJSON")
    _add_source(convert)
    convert.add_argument("--to", required=True, choices=["labels", "coco", "roi", "geojson"])
    convert.add_argument(
        "--flatten", choices=FLATTEN_NAMES,
        help="flatten overlaps first (labels always flatten; default priority-last)",
    )
    convert.add_argument("--out", required=True, help="output folder (written all or nothing)")
    convert.add_argument("--with-images", action="store_true", help="copy the images into OUT/images")
    convert.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    convert.set_defaults(func=_convert)

    synth = cmds.add_parser("synth", help="generate a synthetic dataset in the Glioma C6 layout")
    synth.add_argument("--layout", choices=["glioma-c6"], default="glioma-c6")
    synth.add_argument("--images", type=int, required=True, help="number of images (split 30/4/11/30)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--shape", type=_shape, default=(1944, 2592), help="HEIGHTxWIDTH (default 1944x2592)")
    synth.add_argument("--cells-per-image", type=int, default=180,
                       help="mean cells of a spec image (gen: 70 %%; default 180, the real density at scale 1)")
    synth.add_argument("--scale", type=float, default=1.0,
                       help="pixel size relative to the real images: 0.5 draws every cell at half size, as a camera "
                            "binned 2 x 2 (default 1)")
    synth.add_argument("--overwrite", action="store_true")
    synth.set_defaults(func=_synth)

    dl = cmds.add_parser("download", help="download a registered dataset into the cache, verified")
    dl.add_argument("dataset", help="a registered dataset (cellbench data list)")
    dl.add_argument("--cache", help="cache folder (default $CELLBENCH_CACHE, else ~/.cache/cellbench)")
    dl.add_argument("--archive", action="append",
                    help="a file of the dataset downloaded by hand, used instead of the network (repeatable)")
    add_unpack_options(dl, "data")
    dl.add_argument("--allow-unverified", action="store_true",
                    help="when the publisher's checksum cannot be read (its record is out of reach), take the "
                         "file anyway, trusting it on first use; without this the download stops")
    dl.set_defaults(func=_download)

    ls = cmds.add_parser("list", help="the datasets cellbench can download and read by name")
    ls.add_argument("--json", action="store_true", help="print the full entries as JSON")
    ls.set_defaults(func=_list)
