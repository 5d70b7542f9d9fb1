"""``cellbench gallery publish | list | search | pull``: share trained models as a static gallery folder.

``publish`` adds a model directory (archive, sha256, model card) to a gallery
folder and rewrites its ``index.json`` / ``index.html``; ``list`` and
``search`` read a gallery folder or http(s) URL; ``pull`` brings a model into
``$CELLBENCH_CACHE/gallery/<name>/``, checked, where ``cellbench predict
gallery:NAME`` finds it.
"""

from __future__ import annotations

import argparse
import json
import sys

from cellbench.cli.unpack_options import add_unpack_options, unpack_limits
from cellbench.errors import DataError

__all__ = ["add_gallery_commands", "resolve_model_argument"]

GALLERY_PREFIX = "gallery:"


def resolve_model_argument(model: str, gallery: str | None) -> str:
    """The model directory a ``cellbench predict`` model argument names: ``gallery:NAME`` is pulled
    from ``--gallery`` (folder or URL) into the cache first; anything else is a model directory path."""
    if not model.startswith(GALLERY_PREFIX):
        return model
    if not gallery:
        raise DataError(f"{model}: a gallery model needs --gallery (a gallery folder or http(s) URL)")
    from cellbench.gallery import pull

    return str(pull(model[len(GALLERY_PREFIX):], gallery, progress=sys.stderr.isatty()))


def _publish(args: argparse.Namespace) -> int:
    from cellbench.gallery import publish

    entry = publish(args.model_dir, args.gallery, name=args.name, run=args.run, overwrite=args.overwrite,
                    licence=args.licence, citation=args.citation, modality=args.modality, target=args.target,
                    channels=args.channels, dataset=args.dataset, description=args.description or "",
                    authors=args.author or ())
    acc = entry.get("accuracy")
    score = (f"F1@0.5 {acc['value']:.3f} on {acc['dataset']} / {acc['split']} ({acc['n_images']} images)"
             if acc else "no held-out score (publish with --run RUN to add the run's scores)")
    ts = entry.get("ts_s")
    print(f"published {entry['name']} ({entry['method']} v{entry['method_version']}): {score}; "
          f"Ts {'n/a' if ts is None else f'{ts:.1f} s'}; archive {entry['archive']['path']} "
          f"sha256 {entry['archive']['sha256']}; index {args.gallery}/index.html")
    return 0


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _list(args: argparse.Namespace) -> int:
    from cellbench.gallery import read_index, search

    entries = search(read_index(args.gallery)["models"], text=getattr(args, "text", None), task=args.task,
                     modality=args.modality, target=args.target, method=args.method, sort=args.sort)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print("no models match" if any((getattr(args, "text", None), args.task, args.modality, args.target,
                                        args.method)) else "the gallery is empty")
        return 0
    for e in entries:
        acc = e.get("accuracy")
        scored = (f"F1@0.5 {acc['value']:.3f} on {acc['dataset']}/{acc['split']} ({acc['n_images']} images, "
                  f"{acc['ground_truth']} GT, boundary {acc['boundary_px']} px)" if acc else "no held-out score")
        print(f"{e['name']}  {e['method']} v{e['method_version']}  {e['modality']} / {e['target']} / "
              f"{e['channels']}  trained on {e['dataset']}/{e.get('train_split')} ({e['task']}, "
              f"{e.get('train_images')} images, {e.get('train_cells')} cells)")
        print(f"    {scored}; Ts {_fmt(e.get('ts_s'), 1)} s; overall {_fmt(e.get('overall'))}; "
              f"licence {e.get('licence') or 'not given'}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from cellbench.gallery import pull

    path = pull(args.name, args.gallery, progress=sys.stderr.isatty(), limits=unpack_limits(args, "model"))
    print(path)
    return 0


#: cellbench.gallery.index.SORT_KEYS (a test holds them equal), spelled out here: building the parser must
#: not import the gallery package, which brings the downloader into every `cellbench` command.
SORT_KEYS = ("seggal", "accuracy", "speed", "overall", "name")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gallery", required=True, help="gallery folder or http(s) URL")
    p.add_argument("--json", action="store_true", help="print the matching index entries as one JSON list")
    p.add_argument("--task", help="keep models whose task contains this (e.g. cells, soma, all)")
    p.add_argument("--modality", help="keep models whose imaging modality contains this (e.g. fluorescence)")
    p.add_argument("--target", help="keep models of this target (nuclei, whole-cell)")
    p.add_argument("--method", help="keep models of this method")
    p.add_argument("--sort", choices=SORT_KEYS, default="seggal",
                   help="seggal: modality, nuclei / whole cell, channels, training data, method (default); "
                        "accuracy / overall: best first; speed: lowest standardised training time first")


def add_gallery_commands(sub: argparse._SubParsersAction) -> None:
    gallery = sub.add_parser("gallery", help="publish, list, search and pull models of a shared model gallery")
    gsub = gallery.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")

    publish = gsub.add_parser("publish", help="add a model directory (archive + model card) to a gallery folder")
    publish.add_argument("model_dir", help="model directory written by `cellbench train` or a run's cache")
    publish.add_argument("--gallery", required=True, help="gallery folder (created if missing)")
    publish.add_argument("--name", required=True, help="the model's name in the gallery")
    publish.add_argument("--run", help="run folder whose results database scored this model (held-out scores)")
    publish.add_argument("--licence", "--license", dest="licence",
                         help="licence of the weights (SPDX id, e.g. CC-BY-4.0)")
    publish.add_argument("--citation", help="how to cite the model (text, DOI or URL)")
    publish.add_argument("--modality", help="imaging modality (e.g. fluorescence, phase-contrast, brightfield, H&E)")
    publish.add_argument("--target", help="what it segments: nuclei or whole-cell (SegGal's grouping)")
    publish.add_argument("--channels", help="input channels in words (e.g. grayscale, nuclear, whole-cell, dual)")
    publish.add_argument("--dataset", help="name of the training dataset (default: the run's, or the folder name)")
    publish.add_argument("--description", help="one paragraph about the model")
    publish.add_argument("--author", action="append", help="an author (repeat for several)")
    publish.add_argument("--overwrite", action="store_true", help="replace a model of the same name")
    publish.set_defaults(func=_publish)

    listing = gsub.add_parser("list", help="list a gallery's models (folder or http(s) URL)")
    _filters(listing)
    listing.set_defaults(func=_list)

    find = gsub.add_parser("search", help="search a gallery's models by text and filters")
    find.add_argument("text", nargs="?", help="words to find in name, description, method, dataset, task, ...")
    _filters(find)
    find.set_defaults(func=_list)

    pull = gsub.add_parser("pull", help="download a gallery model into $CELLBENCH_CACHE/gallery/NAME, checked")
    pull.add_argument("name", help="the model's name in the gallery")
    pull.add_argument("--gallery", required=True, help="gallery folder or http(s) URL")
    add_unpack_options(pull, "model")
    pull.set_defaults(func=_pull)
