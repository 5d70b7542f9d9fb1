"""The ``cellbench`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from cellbench import __version__
from cellbench.cli.analyze import add_analyze_commands
from cellbench.cli.data import add_data_commands
from cellbench.cli.demo import add_demo_command
from cellbench.cli.evaluate import add_evaluate_command
from cellbench.cli.export import add_export_commands
from cellbench.cli.gallery import add_gallery_commands
from cellbench.cli.gui import add_gui_command
from cellbench.cli.methods import add_method_commands
from cellbench.cli.models import add_models_commands
from cellbench.cli.reproduce import add_reproduce_command
from cellbench.cli.run import add_run_commands
from cellbench.errors import DataError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellbench",
        description="Train, run, evaluate and compare cell instance segmentation methods.",
    )
    parser.add_argument("--version", action="version", version=f"cellbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_command(sub)
    add_data_commands(sub)
    add_evaluate_command(sub)
    add_run_commands(sub)
    add_reproduce_command(sub)
    add_method_commands(sub)
    add_models_commands(sub)
    add_analyze_commands(sub)
    add_gallery_commands(sub)
    add_export_commands(sub)
    add_gui_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except DataError as exc:
        print(f"cellbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
