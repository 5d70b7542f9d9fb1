"""``cellbench export bioimageio MODEL_DIR --out PKG.zip``: a model directory as a bioimage.io model package."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_export_commands"]


def _bioimageio(args: argparse.Namespace) -> int:
    from cellbench.gallery.bioimageio import export_bioimageio

    summary = export_bioimageio(args.model_dir, args.out, test_image=args.test_image, name=args.name,
                                licence=args.licence, authors=args.author or ("cellbench user",),
                                description=args.description, test_size=args.test_size)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    agree = summary["agreement_with_cellbench_predict"]
    print(f"wrote {summary['package']}: bioimage.io model (spec 0.5) '{summary['name']}', TorchScript and "
          f"state-dict weights, cellpose_flow_dynamics postprocessing; test image {summary['test_shape'][2]} x "
          f"{summary['test_shape'][3]} px, {summary['test_instances']} instances, F1@0.5 {agree['f1@0.5']:.3f} "
          f"against cellbench predict")
    return 0


def add_export_commands(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a model directory to another format (bioimage.io)")
    esub = export.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    bio = esub.add_parser("bioimageio", help="a bioimage.io model package (spec 0.5 zip); Cellpose model directories")
    bio.add_argument("model_dir", help="model directory written by `cellbench train` (method cellpose)")
    bio.add_argument("--out", required=True, help="package file to write (.zip), written atomically")
    bio.add_argument("--test-image", help="image for the package's test tensors (default: the first training image "
                                          "recorded in model.json)")
    bio.add_argument("--test-size", type=int, default=256, help="side of the centre crop used as test image (px)")
    bio.add_argument("--name", help="model name in the package")
    bio.add_argument("--licence", "--license", dest="licence", default="CC-BY-4.0",
                     help="SPDX licence id of the weights (default CC-BY-4.0)")
    bio.add_argument("--author", action="append", help="an author (repeat for several)")
    bio.add_argument("--description", help="one paragraph about the model")
    bio.add_argument("--json", action="store_true", help="print the export summary as JSON")
    bio.set_defaults(func=_bioimageio)
