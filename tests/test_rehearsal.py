"""The paper-scale shapes end to end on a CPU: workflow/configs/paper_shape_rehearsal.yaml runs the whole DAG with
GPT-2-small (12 x 768, context 756, vocabulary 50,257) and ViT-S/16 at 224 px, one or two optimizer steps each in
micro-batches. What a user runs first on a GPU node is the same command with workflow/configs/gpu.yaml."""

import json
import time

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, TINY_FIGURES, job_counts, snakemake

REHEARSAL = REPO / "workflow/configs/paper_shape_rehearsal.yaml"


@pytest.mark.slow
def test_paper_shape_rehearsal_runs_the_whole_dag(tmp_path):
    (tmp_path / "tiny.yaml").write_text("{}")
    dry = snakemake(tmp_path, "-n", "--configfile", str(REHEARSAL))
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert (counts["lm_train"], counts["vit_train"], counts["run_spectra"]) == (2, 2, 2 + 2 + 2)

    started = time.monotonic()
    result = snakemake(tmp_path, "--configfile", str(REHEARSAL), timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"rehearsal: {time.monotonic() - started:.0f} s")  # shown with pytest -s; docs/cluster.md: its wall time

    # the language model has the paper-scale shape, and was trained in micro-batches
    checkpoint = tmp_path / "results/lm/checkpoints/wd_attn~1.0/wd_mlp~0.1/seed~0/step_000001"
    config = json.loads((checkpoint / "config.json").read_text())
    assert (config["n_layer"], config["n_embd"], config["n_head"], config["n_positions"], config["vocab_size"]) == (
        12, 768, 12, 756, 50257)
    summary = json.loads((tmp_path / "results/lm/runs/wd_attn~1.0/wd_mlp~0.1/seed~0/summary.json").read_text())
    assert summary["run"]["settings"]["train"]["micro_batch_size"] == 1 and summary["run"]["model_shape"][
        "vocab_size"] == 50257
    assert np.isfinite(summary["row"]["test_perplexity"]) and summary["row"]["parameters"] > 124e6
    assert summary["run"]["parameter_groups"]["attention"]["tensors"] == 12 * 2  # c_attn and c_proj of 12 layers
    spectra = pd.read_csv(tmp_path / "results/tables/lm_head_spectra.csv")
    assert sorted(spectra["layer"].unique()) == list(range(12)) and set(spectra["head_dim"]) == {64}
    assert len(spectra) == 2 * 2 * 12 * 12 * 2  # runs x checkpoints (0, 1) x layers x heads x products
    table1 = (tmp_path / "results/tables/table1_lm_perplexity.md").read_text()
    assert "over 1 seed." in table1 and "| 0 | " in table1 and "| 1 | " in table1  # two λ_SA rows, one seed each

    # the ViT is ViT-S/16 on 224-pixel RGB images
    manifest = json.loads((tmp_path / "resources/vit/mnist_5k/manifest.json").read_text())
    assert (manifest["image_size"], manifest["channels"], manifest["sizes"]) == (224, 3, {"train": 64, "test": 64})
    vit = pd.read_csv(tmp_path / "results/tables/vit_head_spectra.csv")
    assert sorted(vit["layer"].unique()) == list(range(12)) and set(vit["head_dim"]) == {64}
    assert vit.groupby("layer")["head"].nunique().eq(6).all()

    figures = sorted(p.name for p in (tmp_path / "results/figures").glob("*.png"))
    paper = [name for name in TINY_FIGURES if "lora" not in name]  # LoRA is beyond the paper: off in the rehearsal
    assert figures == sorted(paper + ["fig4_audit_SmolLM2-135M-Instruct-Q4_1.png"])
