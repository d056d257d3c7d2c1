"""The conda environment of the rules and pyproject.toml declare the same packages with the same bounds, and the
lock file pins them within those bounds, at the versions that produced the committed cache."""

import re
import tomllib

import pandas as pd
import yaml
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO
from wdrank.provenance import LIBRARIES


def requirements(lines):
    return {Requirement(line).name.lower(): str(Requirement(line).specifier) for line in lines}


def test_conda_env_agrees_with_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs" / "wdrank.yaml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    # the rules run every job, training included: the light dependencies and the train extra
    assert requirements(pip_section) == requirements(project["dependencies"]
                                                     + project["optional-dependencies"]["train"])
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]


def test_every_rule_uses_the_project_environment():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.findall(r"^\s*rule( \w+)?:", text, re.MULTILINE)  # named, or generated in a loop (name:)
        assert len(rules) == len(re.findall(r"conda:\n\s+WDRANK_ENV", text)), smk.name


LOCK_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?: ; ([^\\]+?))? \\$", re.MULTILINE)
# The environment the lock is compiled for (--python-version 3.11), on Linux: a package pinned twice (e.g. scipy,
# one version per Python range) counts with the pin whose marker holds here.
LOCKED_FOR = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.0",
              "sys_platform": "linux", "platform_system": "Linux"}


def locked_entries():
    """Every (package, version, marker or '') pinned by envs/requirements.lock."""
    return [(canonicalize_name(name), version, marker or "")
            for name, version, marker in LOCK_PIN.findall((REPO / "envs" / "requirements.lock").read_text())]


def locked_versions():
    """{package: version} pinned by envs/requirements.lock for Python 3.11 on Linux."""
    return {name: version for name, version, marker in locked_entries()
            if not marker or Marker(marker).evaluate(LOCKED_FOR)}


def test_the_lock_file_pins_every_dependency_within_pyproject_bounds_with_hashes():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = locked_versions()
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    for line in declared:
        requirement = Requirement(line)
        if requirement.name == project["name"]:  # test = wdrank[train] + the test tools
            declared += [extra for name in requirement.extras for extra in project["optional-dependencies"][name]]
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in envs/requirements.lock: regenerate the lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"envs/requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's {requirement.specifier}"
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", (REPO / "envs" / "requirements.lock").read_text())
    assert all("--hash=sha256:" in block for block in blocks[1:]) and len(blocks) - 1 == len(locked_entries())


def test_the_committed_cache_was_made_with_the_locked_libraries():
    """The provenance the cache carries names, for every library that shapes results, the version the lock pins:
    installing the lock gives the environment that produced the committed numbers."""
    pins = locked_versions()
    tables = sorted((REPO / "results" / "cache").glob("*_provenance.csv.gz"))
    assert tables, "the committed cache carries no provenance"
    for path in tables:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        for library in LIBRARIES:
            made_with = {Version(version).public for version in table[library]}
            assert made_with == {pins[canonicalize_name(library)]}, (path.name, library, made_with)
