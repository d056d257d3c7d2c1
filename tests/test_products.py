"""The product list (wdrank.products) is the one declaration of each figure and table: every entry's function takes
exactly its tables and options, its caption exists, its options resolve on the default config, and the command line
and the workflow offer each entry under its own name."""

import inspect
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from wdrank.cli import build_parser
from wdrank.config import resolve_config
from wdrank.products import PRODUCTS, WILDCARDS, option_values

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "workflow" / "report"
# Captions that belong to no product: the report's front page and the provenance table.
OTHER_CAPTIONS = {"workflow.rst", "provenance.rst"}


@pytest.mark.parametrize("product", PRODUCTS, ids=lambda product: product.name)
def test_each_function_takes_exactly_the_tables_and_options_of_its_entry(product):
    parameters = inspect.signature(product.function()).parameters
    assert list(parameters) == [*product.reads, *product.options]


@pytest.mark.parametrize("product", PRODUCTS, ids=lambda product: product.name)
def test_each_option_resolves_on_the_default_config(product):
    config = resolve_config({"audit": {"models": [{"name": "mine", "path": "x", "note": "n"}]}})
    wildcards = SimpleNamespace(model="mine", trajectory="mine", experiment="vit")
    values = option_values(product, config, wildcards)
    for name, option in product.options.items():
        assert values[name] is not None, name
        words = option.argument(values[name])
        assert len(words) == (option.nargs or 1)
        if option.choices:
            assert values[name] in option.choices


def test_names_are_unique_and_every_caption_belongs_to_a_product():
    names = [product.name for product in PRODUCTS]
    assert len(set(names)) == len(names)
    captions = {path.name for path in REPORT.glob("*.rst")}
    assert captions - OTHER_CAPTIONS == {f"{name}.rst" for name in names}
    assert {product.wildcard for product in PRODUCTS} - {None} <= set(WILDCARDS)
    assert all(product.kind in ("figure", "table") for product in PRODUCTS)


def test_the_command_line_offers_every_product_under_its_name():
    commands = build_parser()._subparsers._group_actions[0].choices
    for kind in ("figure", "table"):
        offered = set(commands[kind]._subparsers._group_actions[0].choices)
        assert offered == {product.name for product in PRODUCTS if product.kind == kind}


@pytest.mark.slow
def test_the_workflow_has_one_rule_per_product_named_like_it():
    rules = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    assert {product.name for product in PRODUCTS} <= set(rules)
