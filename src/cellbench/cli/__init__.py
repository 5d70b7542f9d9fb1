"""Command-line interface: ``cellbench demo`` and ``cellbench data ...``."""

from cellbench.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
