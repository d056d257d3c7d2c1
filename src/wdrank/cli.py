"""Command line of the package: `python -m wdrank <command>`.

Two kinds of command: what a user runs (audit a model, draw a figure or a paper table from result tables, e.g. the
committed cache), and the pipeline's steps, which the Snakemake rules call with every argument explicit, so that
a job is reproducible from its shell line alone. Each command's arguments sit next to its handler in
`wdrank.commands.*`; imports live inside handlers, so a short job pays only for what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from wdrank import __version__
from wdrank.commands import audit, configuration, data, products, results, simulations, training
from wdrank.disk_space import explain, out_of_space
from wdrank.extras import needs_training_extra, training_package
from wdrank.preemption import Preempted

USER_COMMANDS = (audit, products, configuration)
PIPELINE_STEPS = (data, training, simulations, results)


def _listing() -> str:
    """The help text's list of commands: users' first, then the pipeline's steps (each module's COMMANDS)."""
    lines = []
    for title, modules in (("commands", USER_COMMANDS),
                           ("pipeline steps (called by the Snakemake rules)", PIPELINE_STEPS)):
        lines.append(f"{title}:")
        lines += [f"  {name:<18}{line}" for module in modules for name, line in module.COMMANDS.items()]
        lines.append("")
    return "\n".join(lines) + "`wdrank COMMAND --help` describes a command's arguments."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wdrank", description=__doc__.splitlines()[0], epilog=_listing(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wdrank {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="one of those listed below")
    for module in USER_COMMANDS + PIPELINE_STEPS:
        module.register(commands)
    return parser


def _space_message(error: OSError, reason: str) -> str:
    """One line for a write that ran out of space: the file (where Python knows it) and the space free there."""
    if error.filename:
        folder = Path(os.fsdecode(error.filename)).parent
        return f"cannot write {os.fsdecode(error.filename)}: {explain(reason, folder)}"
    return f"cannot write a file (the system did not name it): {explain(reason, Path.cwd())}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FloatingPointError, FileNotFoundError) as error:
        print(f"wdrank {args.command}: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        if not (package := training_package(error)):
            raise
        print(f"wdrank {args.command}: error: {needs_training_extra('this command', package)}",
              file=sys.stderr)
        return 1
    except OSError as error:
        if not (reason := out_of_space(error)):
            raise
        print(f"wdrank {args.command}: error: {_space_message(error, reason)}", file=sys.stderr)
        return 1
    except Preempted as error:
        print(f"wdrank {args.command}: {error}", file=sys.stderr)
        return 128 + error.signum  # the shell's convention for death by signal; SLURM and Snakemake see a failure
    return 0
