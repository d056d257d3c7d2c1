"""Language-model figures (paper Fig. 3 left and appendix): which runs and steps they show, and their titles.

Each figure holds λ_MLP fixed at `wd_mlp`; the rank figures read the final checkpoint of every run, the
rank-over-training figure every checkpoint. Input: the LM head-spectra table (one row per run, step, layer, head,
product), and for the perplexity the runs table.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from wdrank.plots.ranks import rank_all_layers, rank_and_score, rank_over_steps, rank_per_head
from wdrank.plots.style import count
from wdrank.statistics import run_ranks


def _at_wd_mlp(spectra: pd.DataFrame, wd_mlp: float) -> pd.DataFrame:
    fixed = spectra[spectra["wd_mlp"] == wd_mlp]
    if fixed.empty:
        raise ValueError(f"no run with wd_mlp={wd_mlp:g}; the spectra have {sorted(spectra['wd_mlp'].unique())}")
    return fixed


def _final(spectra: pd.DataFrame) -> pd.DataFrame:
    return spectra[spectra["step"] == spectra["step"].max()]


def _where(spectra: pd.DataFrame, wd_mlp: float) -> str:
    seeds = count(spectra["seed"].nunique(), "seed")
    return rf"$\lambda_{{MLP}}={wd_mlp:g}$, step {spectra['step'].max()}, {seeds}"


def fig3_rank_per_head(spectra: pd.DataFrame, layer: int, wd_mlp: float, rank_metric: str) -> plt.Figure:
    """Fig. 3 (left): rank of every head of one layer against λ_SA (numerical and effective rank)."""
    final = _final(_at_wd_mlp(spectra, wd_mlp))
    in_layer = final[final["layer"] == layer]
    if in_layer.empty:
        raise ValueError(f"no layer {layer}; the spectra have layers {sorted(final['layer'].unique())}")
    return rank_per_head(in_layer, "wd_attn", [rank_metric, "effective_rank"],
                         f"Rank per head, layer {layer}, {_where(final, wd_mlp)}")


def figA_rank_all_layers(spectra: pd.DataFrame, wd_mlp: float, rank_metric: str) -> plt.Figure:
    """Appendix: mean rank over heads against λ_SA, one line per layer."""
    final = _final(_at_wd_mlp(spectra, wd_mlp))
    return rank_all_layers(final, "wd_attn", rank_metric, f"Every layer, {_where(final, wd_mlp)}")


def rank_vs_step(spectra: pd.DataFrame, wd_mlp: float, rank_metric: str) -> plt.Figure:
    """Mean rank over heads, layers and seeds against training step, one line per λ_SA."""
    return rank_over_steps(_at_wd_mlp(spectra, wd_mlp), "wd_attn", rank_metric,
                           rf"Rank during training, all layers, $\lambda_{{MLP}}={wd_mlp:g}$")


def rank_and_perplexity(spectra: pd.DataFrame, runs: pd.DataFrame, wd_mlp: float, rank_metric: str) -> plt.Figure:
    """Table 1's finding at a glance: the mean QK and OV rank over all heads and layers of each run, and its test
    perplexity, against λ_SA at λ_MLP = `wd_mlp`, with intervals and paired comparisons with λ_SA = 0."""
    final = _final(_at_wd_mlp(spectra, wd_mlp))
    per_run = run_ranks(final, rank_metric).merge(runs[["wd_attn", "wd_mlp", "seed", "test_perplexity"]],
                                                  on=["wd_attn", "wd_mlp", "seed"])
    return rank_and_score(per_run, rank_metric, "test_perplexity", "test perplexity", None, final["head_dim"].max(),
                          f"Language model, all heads and layers, {_where(final, wd_mlp)}")
