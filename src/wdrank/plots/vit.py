"""ViT figures (paper Fig. 3 right): mean rank over all heads and layers against the attention weight decay,
with test accuracy beside it, and a layer x λ heat map of the mean rank."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from wdrank.plots.ranks import PRODUCT_LABELS, metric_label, rank_and_score
from wdrank.plots.style import apply_theme, count, figure_size
from wdrank.spectra import HEAD_PRODUCTS
from wdrank.statistics import run_ranks

LAMBDA_LABEL = r"attention weight decay $\lambda$"


def _where(spectra: pd.DataFrame, runs: pd.DataFrame) -> str:
    return (rf"$\lambda_{{MLP}}={runs['wd_mlp'].iloc[0]:g}$, step {spectra['step'].max()}, "
            + count(runs["seed"].nunique(), "seed"))


def fig3_vit_rank(spectra: pd.DataFrame, runs: pd.DataFrame, rank_metric: str) -> plt.Figure:
    """Fig. 3 (right): QK and OV mean rank over all heads and layers, and test accuracy, against λ
    (`wdrank.plots.ranks.rank_and_score`)."""
    per_run = run_ranks(spectra, rank_metric).merge(runs[["wd_attn", "seed", "test_accuracy"]], on=["wd_attn", "seed"])
    per_run["test_accuracy"] *= 100
    return rank_and_score(per_run, rank_metric, "test_accuracy", "test accuracy (%)", (0, 104),
                          spectra["head_dim"].max(), f"ViT, all heads and layers, {_where(spectra, runs)}")


def figA_vit_rank_heatmap(spectra: pd.DataFrame, runs: pd.DataFrame, rank_metric: str) -> plt.Figure:
    """Mean rank over heads and seeds at the final checkpoint, layer x λ, for QK and OV (annotated cells)."""
    apply_theme()
    final = spectra[spectra["step"] == spectra["step"].max()]
    upper = final["head_dim"].max()
    fig, axes = plt.subplots(1, 2, figsize=figure_size(height=0.28 * final["layer"].nunique() + 1.4))
    for ax, product in zip(axes, HEAD_PRODUCTS, strict=True):
        grid = final[final["product"] == product].pivot_table(index="layer", columns="wd_attn", values=rank_metric,
                                                              aggfunc="mean")
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", vmin=0, vmax=upper, ax=ax,
                    annot_kws={"fontsize": 6}, cbar_kws={"label": metric_label(rank_metric)})
        ax.set_xticklabels([f"{v:g}" for v in grid.columns])
        ax.set(title=PRODUCT_LABELS[product], xlabel=LAMBDA_LABEL, ylabel="layer")
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(f"ViT, mean rank per layer, {_where(spectra, runs)}")
    return fig
