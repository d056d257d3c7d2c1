"""Fig. 2 toy Transformer and the two-scalar appendix: theory checks and the head split of the toy model."""

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from wdrank.experiments import toy
from wdrank.experiments.scalar_pair import ScalarPairRun, simulate
from wdrank.experiments.toy import InContextRegression
from wdrank.experiments.training import run_decays, run_training
from wdrank.heads import attention_factors
from wdrank.models.toy import ToyShape, build_toy
from wdrank.recording import fitted_decay_rate
from wdrank.run_spectra import run_spectra
from wdrank.theory import l2_optimum

SHAPE = ToyShape(x_dim=3, n_layer=2, d_model=12, n_head=2, d_head=6)


def train_toy(tmp_path, lam, **train):
    """One toy run through the pipeline's own path (train, then the spectra step); returns (summary, spectra)."""
    settings = {"model": asdict(SHAPE), "train": {"batch_size": 32, "context": 8, "wd_other": 0.0, **train}}
    summary = run_training(toy, settings, None, run_decays(settings["train"], lam, None), 0,
                           tmp_path / "summary.json", tmp_path / "metrics.jsonl", tmp_path / "ckpt", progress=False)
    return summary, run_spectra(tmp_path / "summary.json", (0.01,))


def test_gradient_descent_balance_decays_at_two_eta_lambda(tmp_path):
    """Plain gradient descent on L + λ/2‖W‖²: every head's ‖AᵀA − BᵀB‖ (QK and OV) decays at 2ηλ per step ± 10%."""
    lr, lam = 0.01, 0.5
    _, spectra = train_toy(tmp_path, lam, steps=400, lr=lr, optimizer="sgd", record_points=25, eval_size=64)
    rates = [fitted_decay_rate(head["step"].to_numpy(), head["balance_discrepancy"].to_numpy())
             for _, head in spectra.sort_values("step").groupby(["layer", "head", "product"])]
    assert len(rates) == 2 * 2 * 2
    np.testing.assert_allclose(rates, 2 * lr * lam, rtol=0.10)


def test_head_factors_reproduce_the_toy_attention():
    model = build_toy(SHAPE, seed=0).double()
    factors = {(f.layer, f.product): f for f in attention_factors(model.state_dict(), SHAPE.config())}
    x = torch.randn(2, 5, SHAPE.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    n_context = 4
    expected = model.layers[1].attn(x, n_context)
    qk, ov = factors[(1, "QK")], factors[(1, "OV")]
    m_qk = torch.from_numpy(qk.a @ qk.b.transpose(0, 2, 1))
    m_ov = torch.from_numpy(ov.a @ ov.b.transpose(0, 2, 1))
    scores = torch.einsum("btd,hde,bse->bhts", x, m_qk, x[:, :n_context]) / np.sqrt(SHAPE.d_head)
    output = torch.einsum("bhts,bsd,hde->bte", scores.softmax(-1), x[:, :n_context], m_ov)
    torch.testing.assert_close(output, expected)


def test_regression_tasks_are_fresh_deterministic_and_consistent():
    task = InContextRegression(x_dim=3, context=8, batch_size=4, seed=1, eval_size=16)
    whole = slice(0, 4)
    tokens, targets = task.batch(5, whole)
    assert tokens.shape == (4, 9, 4) and targets.shape == (4,)
    assert torch.equal(tokens, task.batch(5, whole)[0]) and not torch.equal(tokens, task.batch(6, whole)[0])
    assert torch.equal(task.batch(5, slice(2, 4))[0], tokens[2:])  # a micro-batch is those rows of the batch
    assert torch.all(tokens[:, -1, -1] == 0)  # the query's y is hidden
    # y is linear in x with one w per task: solve it from the context and predict the query exactly
    x, y = tokens[0, :-1, :-1].double(), tokens[0, :-1, -1].double()
    w = torch.linalg.lstsq(x, y[:, None]).solution
    assert torch.allclose(tokens[0, -1, :-1].double() @ w, targets[0].double(), atol=1e-4)


def test_toy_model_learns_in_context_regression(tmp_path):
    summary, spectra = train_toy(tmp_path, 0.0, steps=300, batch_size=64, lr=0.01, optimizer="adamw",
                                 record_points=3, eval_size=512)
    assert summary["row"]["eval_loss"] < 0.5 * SHAPE.x_dim  # predicting 0 costs E[y²] = x_dim
    assert list(summary["row"]) == ["wd_attn", "seed", "eval_loss"]
    assert list(spectra.columns[:3]) == ["wd_attn", "seed", "step"] and spectra["step"].max() == 300


@pytest.mark.parametrize("parametrisation", ["plain", "factorised"])
@pytest.mark.parametrize("lam", [0.1, 0.3, 0.6])
def test_adam_with_l2_reaches_the_closed_form_optimum(parametrisation, lam):
    """Plain L2 shrinks to w*/(1+λ); factorised L2 soft-thresholds (the small coordinate becomes 0)."""
    run = ScalarPairRun(parametrisation, "adam_l2", lam, (1.0, 0.25), (0.2, 1.2), lr=0.01, steps=3000)
    final = simulate(run).iloc[-1]
    np.testing.assert_allclose([final["w1"], final["w2"]], l2_optimum((1.0, 0.25), lam, parametrisation), atol=2e-3)


def test_scalar_pair_is_deterministic_and_validated():
    run = ScalarPairRun("factorised", "adamw", 0.3, (1.0, 0.25), (0.2, 1.2), lr=0.01, steps=50)
    pd.testing.assert_frame_equal(simulate(run), simulate(run))
    with pytest.raises(ValueError, match="parametrisation"):
        ScalarPairRun("squared", "adamw", 0.3, (1.0, 0.25), (0.2, 1.2), lr=0.01, steps=50)


def test_a_training_job_uses_the_threads_it_was_given(tmp_path):
    """Snakemake exports OMP_NUM_THREADS = the job's threads (= resources cpus_per_task); training runs with that
    many and records it in the session."""
    import json
    import os
    import subprocess
    import sys

    settings = {"model": asdict(SHAPE), "train": {"steps": 5, "batch_size": 8, "context": 4, "lr": 0.01,
                                                  "optimizer": "adamw", "wd_other": 0.0, "record_points": 2,
                                                  "eval_size": 8}}
    command = [sys.executable, "-m", "wdrank", "train", "toy_transformer", "--settings", json.dumps(settings),
               "--wd-attn", "0.1", "--seed", "0", "--summary", str(tmp_path / "summary.json"), "--metrics",
               str(tmp_path / "metrics.jsonl"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert json.loads((tmp_path / "summary.json").read_text())["session"]["threads"] == 2
