"""`wdrank figure NAME` and `wdrank table NAME`: build one product of `wdrank.products.PRODUCTS` from result tables
(CSV, or the committed .csv.gz cache).

Every product's arguments come from its entry: `--<table>` for each table it reads, `--<option>` for each option,
then the files it writes (`--pdf --png` for a figure, one per format for a table).
"""

from __future__ import annotations

import argparse

from wdrank.commands import add_command, add_group, describe_group, figure_arguments
from wdrank.products import PRODUCTS, Product, flag

COMMANDS = {
    "figure": "draw one figure of the paper from its result tables (e.g. results/cache/*.csv.gz)",
    "table": "build a paper table (Table 1, the rank tables, the audit summary) from result tables",
}


def _inputs(product: Product, args: argparse.Namespace) -> dict:
    """The product's tables, read (a list where it gathers one per model)."""
    import pandas as pd

    tables = {}
    for name in product.reads:
        paths = getattr(args, name)
        tables[name] = [pd.read_csv(path) for path in paths] if product.gathered(name) else pd.read_csv(paths)
    return tables


def _build(product: Product):
    """The handler of one product: read its tables, call its function with them and its options, write its files."""

    def handler(args: argparse.Namespace) -> None:
        options = {name: getattr(args, name) for name in product.options}
        if product.kind == "figure":
            from wdrank.plots.style import save_figure, set_width

            set_width(args.width)
            save_figure(product.function()(**_inputs(product, args), **options), args.pdf, args.png)
            return
        from wdrank.io import atomic_path

        texts = product.function()(**_inputs(product, args), **options)
        for ext in product.formats:
            with atomic_path(getattr(args, ext)) as tmp:
                tmp.write_text(texts[ext])

    return handler


def _register_product(group: argparse._SubParsersAction, product: Product) -> None:
    sub = add_command(group, product.name, product.description, _build(product))
    for name, stem in product.reads.items():
        gathered = product.gathered(name)
        sub.add_argument(flag(name), dest=name, required=True, nargs="+" if gathered else None,
                         help=f"{stem}.csv" + (f", one per {gathered}" if gathered else ""))
    for name, option in product.options.items():
        sub.add_argument(flag(name), dest=name, required=option.default is None, default=option.default,
                         type=option.type, nargs=option.nargs, choices=option.choices, help=option.help)
    if product.kind == "figure":
        figure_arguments(sub)
    else:
        for ext in product.formats:
            sub.add_argument(f"--{ext}", required=True, help=f"the table as {ext.upper()}")


def register(commands: argparse._SubParsersAction) -> None:
    for kind in ("figure", "table"):
        parser, group = add_group(commands, kind, COMMANDS[kind], kind.upper())
        for product in PRODUCTS:
            if product.kind == kind:
                _register_product(group, product)
        describe_group(parser, group)
