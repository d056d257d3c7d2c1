"""The workflow on a real SLURM: a single-node cluster from Debian packages on 127.0.0.1 (tests/slurm/), the tiny
config submitted through `snakemake --executor slurm`, and a job that fails. Skipped where the machine cannot host
the daemons (not root, not Debian, no plugin)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY

HARNESS = Path(__file__).parent / "slurm"
# Without slurmdbd there is no sacct: the plugin must poll squeue, and start polling soon (tests/slurm/slurm-up.sh
# keeps finished jobs visible to squeue for 10 minutes).
# Status polled every second (default 10 s) keeps the test short.
SLURM_OPTIONS = ["--profile", str(REPO / "workflow/profiles/slurm"), "--slurm-status-command", "squeue",
                 "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "1",
                 "--latency-wait", "5", "--jobs", "4",
                 "--default-resources", "slurm_account=root", "slurm_partition=debug"]
# The experiments whose tables are compared with the local run (the others are off to keep the test short), and
# one toy run asking for 2 CPUs, to see that a job runs with the threads it asked for.
SLURM_TINY = {**TINY, **{name: {"enabled": False} for name in ("vision_transformer", "scalar_pair", "audit")},
              "toy_transformer": {**TINY["toy_transformer"], "sweep": {"wd_attn": [1.0], "seeds": [0]}},
              "resources": {"toy_train": {"cpus_per_task": 2}}}

pytestmark = pytest.mark.slurm


def cannot_host_slurm() -> str | None:
    if os.geteuid() != 0:
        return "needs root: installs Debian packages and starts munged, slurmctld and slurmd"
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "needs a Debian machine (apt-get) for the slurm packages"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return 'needs the SLURM executor plugin: pip install -e ".[slurm]"'
    return None


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if reason := cannot_host_slurm():
        pytest.skip(reason)
    env = {**os.environ, "SLURM_BASE": str(tmp_path_factory.mktemp("slurm"))}
    try:
        up = subprocess.run(["bash", str(HARNESS / "slurm-up.sh")], env=env, capture_output=True, text=True,
                            timeout=900)
        assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}"
        yield env
    finally:
        subprocess.run(["bash", str(HARNESS / "slurm-down.sh")], env=env, capture_output=True, timeout=120)


def run_on_slurm(workdir, config, *extra):
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(workdir / "tiny.yaml"), *SLURM_OPTIONS, *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=900)


def finished_jobs(cluster_env) -> list[str]:
    """Lines of slurmctld's log recording a job that ended with exit status 0."""
    log = Path(cluster_env["SLURM_BASE"]) / "log/slurmctld.log"
    return [line for line in log.read_text().splitlines() if "WEXITSTATUS 0" in line]


def test_tiny_config_on_slurm_gives_the_tables_of_a_local_run(slurm_cluster, tiny_run, tmp_path):
    before = len(finished_jobs(slurm_cluster))
    result = run_on_slurm(tmp_path, SLURM_TINY)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # every job but the corpus download (a local rule) ran as a SLURM job: 2 Fig. 1 runs, their table and figure;
    # LM data, 2 trainings, 2 spectra, the runs tables, Table 1, the rank table and 4 figures; the toy run, its
    # spectra, tables, figure
    assert len(finished_jobs(slurm_cluster)) - before == 4 + 12 + 4
    toy = json.loads((tmp_path / "results/toy/runs/wd_attn~1.0/seed~0/summary.json").read_text())
    assert toy["session"]["threads"] == 2  # resources cpus_per_task 2 -> 2 CPUs on the node -> 2 threads
    for table in ("fig1_factorized_matrices.csv", "lm_runs.csv", "lm_head_spectra.csv",
                  "table1_lm_perplexity.csv", "table1_lm_perplexity.md"):
        produced, local = tmp_path / "results/tables" / table, tiny_run / "results/tables" / table
        assert produced.read_bytes() == local.read_bytes(), table
    assert (tmp_path / "results/figures/fig3_lm_rank_per_head.png").exists()


def test_a_failing_job_fails_the_workflow_and_names_its_log(slurm_cluster, tmp_path):
    diverging = {"factorized": {"lambdas": [0.4], "seeds": [0], "lr": 10.0, "steps": 200},
                 **{name: {"enabled": False} for name in ("language_model", "vision_transformer",
                                                          "toy_transformer", "scalar_pair", "audit")}}
    result = run_on_slurm(tmp_path, diverging, "--retries", "0")  # the profile's resubmissions would fail alike
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in rule factorized_run" in output and "logs/factorized_run/lam~0.4/seed~0.log" in output
    assert "diverged" in (tmp_path / "logs/factorized_run/lam~0.4/seed~0.log").read_text()
    assert not (tmp_path / "results/factorized/runs/lam~0.4/seed~0.parquet").exists()
