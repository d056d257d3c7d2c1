"""The conda environment of the rules and pyproject.toml declare the same packages with the same bounds."""

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from conftest import REPO


def requirements(lines):
    return {Requirement(line).name.lower(): str(Requirement(line).specifier) for line in lines}


def test_conda_env_agrees_with_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs" / "wdrank.yaml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert requirements(pip_section) == requirements(project["dependencies"])
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]


def test_every_rule_uses_the_project_environment():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.findall(r"^\s*rule \w+:", text, re.MULTILINE)
        assert len(rules) == len(re.findall(r"conda:\n\s+WDRANK_ENV", text)), smk.name
