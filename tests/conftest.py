"""Shared fixtures: the repository layout and the default configuration as the pipeline resolves it."""

from pathlib import Path

import pytest
import yaml

from wdrank.config import load_schema, resolve_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="session")
def schema():
    return load_schema(SCHEMA_PATH)


@pytest.fixture(scope="session")
def default_config(schema):
    """config.yaml, validated and with defaults filled, exactly as the Snakefile sees it."""
    with open(REPO / "config.yaml", encoding="utf-8") as handle:
        return resolve_config(yaml.safe_load(handle), schema)
