"""The commands of `python -m wdrank`, one module per kind of work (see `wdrank.cli`).

Each module lists its commands in COMMANDS (name -> one line for `wdrank --help`) and adds their parsers in
`register`, each command's arguments beside its handler. Arguments the rules always supply are required: their
defaults live in the config schema only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable


def add_command(commands: argparse._SubParsersAction, name: str, description: str,
                handler: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_group(commands: argparse._SubParsersAction, name: str, description: str, metavar: str
              ) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A command whose sub-commands are named things (figures, tables); `describe_group` lists them in its help."""
    parser = commands.add_parser(name, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser, parser.add_subparsers(dest=name, required=True, metavar=metavar, help="one of those listed below")


def describe_group(parser: argparse.ArgumentParser, group: argparse._SubParsersAction) -> None:
    """List a group's sub-commands, each with its description, under the group's help."""
    parser.epilog = "\n".join(f"  {name:<31}{sub.description}" for name, sub in group.choices.items())


def rank_thresholds_argument(parser: argparse.ArgumentParser, default: list[float] | None = None) -> None:
    """--rank-thresholds τ ... (at least one): numerical rank counts σ_i > τ·σ_max; required unless a default."""
    parser.add_argument("--rank-thresholds", type=float, nargs="+", required=default is None, default=default,
                        metavar="TAU", help="relative thresholds τ of the numerical rank, #{σ_i > τ·σ_max}")


def figure_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--pdf and --png: the two files a figure is written to, and --width: the text it is printed in."""
    from wdrank.config import schema_default

    parser.add_argument("--pdf", required=required, help="the figure as vector PDF (TrueType fonts embedded)")
    parser.add_argument("--png", required=required, help="the figure as PNG")
    parser.add_argument("--width", default=schema_default("figure_width"),
                        help="one_column (5.5 in), two_column (6.75 in) or inches (default: %(default)s)")


def torch_threads() -> None:
    """One intra-op thread unless the job was given more (Snakemake sets OMP_NUM_THREADS to the job's threads)."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
