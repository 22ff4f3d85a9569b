"""Options shared by several command groups (one definition each)."""

from __future__ import annotations

import argparse


def add_plugin_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--plugin FILE.py`` (repeatable): load a bare plugin file before anything else."""
    parser.add_argument(
        "--plugin",
        dest="plugin_files",
        action="append",
        default=[],
        metavar="FILE.py",
        help=f"load a plugin file{what} (repeatable)",
    )


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable) and ``--plugin``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set train.epochs=2 (repeatable)",
    )
    add_plugin_option(parser)


def load_plugin_files(args: argparse.Namespace) -> None:
    """Load every ``--plugin`` file of the command line."""
    from eclsr.registry.manager import load_plugin_file

    for file in args.plugin_files:
        load_plugin_file(file)
