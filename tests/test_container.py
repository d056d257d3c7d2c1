"""The container: its definition installs exactly the lock, and with `container` set and Snakemake's apptainer
deployment every job runs inside the image. No registry or container runtime is reachable here, so the image itself is
never built: a stand-in `apptainer` records each call and runs the job's command on the host."""

import os
import re
import stat

import pytest

from conftest import REPO, snakemake

DOCKERFILE = (REPO / "envs" / "Dockerfile").read_text()
STAND_IN = """#!/usr/bin/env bash
# Stand-in for apptainer: records each call; `pull` makes an empty image, `exec` runs the command on the host.
echo "$*" >> "$APPTAINER_CALLS"
case "$1" in
  --version) echo "apptainer version 1.3.4" ;;
  pull) shift; while [ $# -gt 0 ]; do [ "$1" = "--name" ] && touch "$2"; shift; done ;;
  exec) shift; while [ $# -gt 0 ] && [ "$1" != "bash" ]; do shift; done; exec "$@" ;;
esac
"""


def instructions(kind):
    """The arguments of every Dockerfile instruction of one kind (FROM, RUN, COPY), continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(f"{kind} ")]


def test_the_container_installs_exactly_the_lock_on_its_python():
    lock = (REPO / "envs" / "requirements.lock").read_text()
    python = re.search(r"--python-version (\d+\.\d+)", lock).group(1)
    assert instructions("FROM") == [f"python:{python}-slim-bookworm"]  # the Python the lock was compiled for
    runs = instructions("RUN")
    assert runs[0] == "python -m pip install --require-hashes --no-deps -r envs/requirements.lock"
    assert runs[1] == "python -m pip install --no-deps . && python -m pip check"  # nothing beyond the lock
    assert "envs/requirements.lock envs/requirements.lock" in instructions("COPY")
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    copied = {part for args in instructions("COPY") for part in args.split()[:-1]}
    assert {f"!{path}" for path in copied} <= {line.rstrip("/") for line in ignored}  # the build context has them


@pytest.mark.slow
def test_with_a_container_every_job_runs_in_it(tmp_path, monkeypatch):
    shim = tmp_path / "bin" / "apptainer"
    shim.parent.mkdir()
    shim.write_text(STAND_IN)
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("PATH", f"{shim.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("APPTAINER_CALLS", str(calls))
    work = tmp_path / "work"
    work.mkdir()
    targets = ["results/tables/figA_scalar_pair_trajectories.csv", "results/tables/fig1_factorized_matrices.csv"]
    config = {"factorized": {"lambdas": [0.0, 0.4], "seeds": [0], "steps": 300, "record_points": 5},
              "container": "docker://registry.example/wdrank:0.1.0"}
    result = snakemake(work, *targets, "--software-deployment-method", "apptainer", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = calls.read_text().splitlines()
    pulls = [line for line in lines if line.startswith("pull ")]
    executions = [line for line in lines if line.startswith("exec ")]
    assert len(pulls) == 1 and pulls[0].endswith(" docker://registry.example/wdrank:0.1.0")
    image = pulls[0].split("--name ")[1].split()[0]
    jobs = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", result.stderr)
    assert sorted(jobs) == ["factorized_run", "factorized_run", "factorized_table", "scalar_pair"], jobs
    assert len(executions) == len(jobs) and all(f"/{image} bash -c " in line for line in executions)
    assert all((work / target).exists() for target in targets)

    dry = snakemake(work, "-n", "--forceall", *targets, config={**config, "container": None})
    assert dry.returncode == 0 and "Singularity image" not in dry.stdout + dry.stderr  # off by default
