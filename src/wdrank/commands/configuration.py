"""`wdrank config`: every setting of the pipeline, with its value and its description, as YAML to copy into a config
file. The values are the schema's defaults (the embedded default run), or those of a config file laid over them."""

from __future__ import annotations

import argparse

from wdrank.commands import add_command

COMMANDS = {"config": "print every setting with its value and why, as YAML (the defaults, or a config file's)"}


def _print_config(args: argparse.Namespace) -> None:
    import yaml

    from wdrank.config import annotated_yaml, fill_defaults, load_schema, resolve_config

    given = {}
    if args.configfile is not None:
        with open(args.configfile, encoding="utf-8") as handle:
            given = yaml.safe_load(handle) or {}
    resolve_config(given)  # every problem named before anything is printed
    print(annotated_yaml(fill_defaults(given, load_schema())))


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "config", COMMANDS["config"], _print_config)
    parser.add_argument("--configfile", metavar="FILE",
                        help="a config file (as given to snakemake --configfile) laid over the defaults")
