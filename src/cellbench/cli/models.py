"""``cellbench models ...``: the registry of pretrained weights: list, pull, path, verify, add."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_models_commands"]


def _cache(args: argparse.Namespace):
    return args.cache or None


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return ""


def _list(args: argparse.Namespace) -> int:
    from cellbench.pretrained import cached_paths, list_pretrained

    entries = list_pretrained(args.method)
    if args.json:
        out = [{**e.to_dict(), "cached": cached_paths(e.name, _cache(args)) is not None} for e in entries]
        print(json.dumps(out, indent=2))
        return 0
    if not entries:
        print(f"no pretrained models for method {args.method!r}")
        return 0
    for e in entries:
        cached = "cached" if cached_paths(e.name, _cache(args)) is not None else "not cached"
        sizes = [f.size for f in e.files]
        size = _size(sum(sizes)) if all(s is not None for s in sizes) else "size unknown"
        check = "checksum published" if e.checksum_published else "no checksum published: trusted on first use"
        used = f" (also {', '.join(e.used_by)})" if e.used_by else ""
        print(f"{e.name}  [{e.method}{used}]  {size}, {check}, {cached}")
        print(f"    {e.training.objects}; {e.training.modality}; channels {e.training.channels}")
        print(f"    trained on {e.training.datasets}")
        print(f"    licence {e.licence}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from cellbench.pretrained import pull_pretrained

    for name in args.names:
        print(pull_pretrained(name, cache_dir=_cache(args), mirror=args.mirror, timeout=args.timeout,
                              progress=sys.stderr.isatty()))
    return 0


def _path(args: argparse.Namespace) -> int:
    from cellbench.pretrained import cached_paths, get_pretrained, model_folder

    paths = cached_paths(args.name, _cache(args))
    if paths is None:
        entry = get_pretrained(args.name)
        print(f"cellbench: {entry.name} is not in the cache ({model_folder(entry, _cache(args))}); "
              f"run `cellbench models pull {entry.name}`", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from cellbench.pretrained import models_dir, verify_pretrained

    checks = verify_pretrained(args.name, _cache(args))
    if not checks:
        print(f"no pretrained models in the cache ({models_dir(_cache(args))})")
        return 0
    basis = {"published": "published checksum", "recorded": "sha256 recorded at first download",
             "none": "NOT VERIFIED: no checksum published or recorded"}
    failed = 0
    for entry, check in checks:
        if check.ok:
            print(f"ok      {entry.name}  {check.path.name}  ({basis[check.basis]})")
        else:
            failed += 1
            print(f"FAILED  {entry.name}  {check.path}: {check.problem}")
    if failed:
        print(f"cellbench: {failed} file(s) failed; `cellbench models pull NAME` fetches them again", file=sys.stderr)
    return 1 if failed else 0


def _add(args: argparse.Namespace) -> int:
    from cellbench.pretrained import add_pretrained

    for path in add_pretrained(args.name, args.files, _cache(args)):
        print(path)
    return 0


def add_models_commands(sub: argparse._SubParsersAction) -> None:
    from cellbench.remote import default_cache_dir

    models = sub.add_parser("models", help="pretrained weights by name: list, pull, path, verify, add")
    cmds = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    cache_help = f"cache folder (default $CELLBENCH_CACHE, now {default_cache_dir()}); weights go to CACHE/models"

    ls = cmds.add_parser("list", help="the registry: name, method, files, checksum, licence, training data")
    ls.add_argument("--method", help="only weights this method can use")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument("--cache", help=cache_help)
    ls.set_defaults(func=_list)

    pull = cmds.add_parser("pull", help="download into the cache, verified (resumes a partial download)")
    pull.add_argument("names", nargs="+", metavar="NAME", help="registry name(s), e.g. cellpose/cyto3")
    pull.add_argument("--cache", help=cache_help)
    pull.add_argument("--mirror", help="folder or http(s) URL holding the files under their published names "
                                       "(default $CELLBENCH_MODEL_MIRROR, else $CELLBENCH_MIRROR)")
    pull.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default 60)")
    pull.set_defaults(func=_pull)

    path = cmds.add_parser("path", help="print the cached file(s), one per line; exit 1 when not cached")
    path.add_argument("name", metavar="NAME")
    path.add_argument("--cache", help=cache_help)
    path.set_defaults(func=_path)

    verify = cmds.add_parser("verify", help="check cached files against their checksums; exit 1 on a mismatch")
    verify.add_argument("name", nargs="?", metavar="NAME", help="one entry (default: everything cached)")
    verify.add_argument("--cache", help=cache_help)
    verify.set_defaults(func=_verify)

    add = cmds.add_parser("add", help="register a file downloaded by hand, after checking it")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--file", dest="files", action="append", required=True, metavar="F",
                     help="the file (repeat for entries of several files; names must then be the published ones)")
    add.add_argument("--cache", help=cache_help)
    add.set_defaults(func=_add)
