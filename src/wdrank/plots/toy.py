"""Fig. 2 (toy Transformer: rank, balance, gap, loss against λ and time) and the two-scalar appendix figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from wdrank.plots.ranks import PRODUCT_LABELS, metric_label, weight_decay_axis
from wdrank.plots.style import apply_theme, count, figure_size, integer_axis, log_axis
from wdrank.theory import l2_optimum

FLOOR = 1e-12


def _over_time(ax, spectra, column, norm, cmap, lr=None) -> None:
    """Median over heads, layers and seeds of an OV statistic against step, one line per λ (log scale)."""
    ov = spectra[spectra["product"] == "OV"]
    lowest = max(FLOOR, ov.groupby(["wd_attn", "step"])[column].median().min() / 10)
    for lam, per_lambda in ov.groupby("wd_attn"):
        curve = per_lambda.groupby("step")[column].median()
        ax.plot(curve.index, curve.clip(lower=FLOOR), color=cmap(norm(lam)), lw=1.6)
        if lr is not None and lam > 0:
            ax.plot(curve.index, curve.iloc[0] * np.exp(-2 * lr * lam * curve.index), color=cmap(norm(lam)),
                    ls="--", lw=1.0)
    if lr is not None:
        ax.plot([], [], color="0.3", ls="--", lw=1.0, label=r"$e^{-2\eta\lambda t}$ (gradient flow)")
        ax.legend(loc="lower left", fontsize="small")
    log_axis(ax, "y", [lowest, ov[column].max()])
    ax.set_ylim(bottom=lowest)  # the references fall on below the data; the axis follows the data
    ax.set_xlabel("step")
    integer_axis(ax)


def plot_toy(spectra: pd.DataFrame, runs: pd.DataFrame, rank_metric: str, lr: float, optimizer: str) -> plt.Figure:
    """Fig. 2: (a) final rank vs λ, (b) OV balance over time with the e^{−2ηλt} reference, (c) OV gap over time,
    (d) in-context regression loss vs λ."""
    apply_theme()
    fig, axes = plt.subplots(2, 2, figsize=figure_size(0.78))
    final = spectra[spectra["step"] == spectra["step"].max()]
    for product, marker in (("OV", "o"), ("QK", "s")):
        per_product = final[final["product"] == product]
        sns.lineplot(data=per_product, x="wd_attn", y=rank_metric, marker=marker, errorbar="sd", ax=axes[0, 0],
                     label=PRODUCT_LABELS[product])
    weight_decay_axis(axes[0, 0], final["wd_attn"].unique())
    axes[0, 0].set_ylim(bottom=0)
    axes[0, 0].set_xlabel(r"weight decay $\lambda$ (attention)")
    axes[0, 0].set_ylabel(metric_label(rank_metric) + f" at step {final['step'].max()}")

    lambdas = sorted(spectra["wd_attn"].unique())
    norm, cmap = Normalize(min(lambdas), max(lambdas)), plt.get_cmap("viridis")
    _over_time(axes[0, 1], spectra, "balance_discrepancy", norm, cmap, lr=lr)
    axes[0, 1].set_ylabel(r"balance $\|W_V^\top W_V - W_O W_O^\top\|_F$")
    _over_time(axes[1, 0], spectra, "gap", norm, cmap)
    axes[1, 0].set_ylabel(r"gap $\frac{1}{2}(\|W_V\|^2+\|W_O\|^2)-\|W_V W_O\|_*$")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[:, 1], label=r"$\lambda$", shrink=0.6)

    sns.pointplot(data=runs, x="wd_attn", y="eval_loss", errorbar="sd", ax=axes[1, 1], color="black")
    log_axis(axes[1, 1], "y", runs["eval_loss"])
    axes[1, 1].set_xlabel(r"weight decay $\lambda$ (attention)")
    axes[1, 1].set_ylabel("in-context regression loss (held-out tasks)")
    for ax, letter in zip(axes.flat, "abcd", strict=True):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
    fig.suptitle(f"Attention-only Transformer, in-context linear regression, {optimizer}, lr {lr:g}\n"
                 f"{count(runs['seed'].nunique(), 'seed')}; medians over heads, layers and seeds")
    return fig


def plot_scalar_pair(table: pd.DataFrame, target: tuple[float, float]) -> plt.Figure:
    """Rows: plain / factorised weights; columns: AdamW / Adam + L2; one trajectory per λ in the (w1, w2) plane."""
    apply_theme()
    fig, axes = plt.subplots(2, 2, figsize=figure_size(0.9), sharex=True, sharey=True)
    lambdas = sorted(table["lambda"].unique())
    palette = dict(zip(lambdas, sns.color_palette("flare", len(lambdas)), strict=True))
    titles = {"adamw": "AdamW (decoupled decay)", "adam_l2": "Adam + L2 term"}
    for row, parametrisation in enumerate(("plain", "factorised")):
        for col, optimizer in enumerate(("adamw", "adam_l2")):
            ax = axes[row, col]
            runs = table[(table["parametrisation"] == parametrisation) & (table["optimizer"] == optimizer)]
            for lam, path in runs.groupby("lambda"):
                ax.plot(path["w1"], path["w2"], color=palette[lam], lw=1.2, label=rf"$\lambda={lam:g}$")
                ax.plot(path["w1"].iloc[-1], path["w2"].iloc[-1], "o", color=palette[lam], ms=4)
                if optimizer == "adam_l2":
                    ax.plot(*l2_optimum(target, lam, parametrisation), "x", color="black", ms=6, mew=1.2)
            if optimizer == "adam_l2":
                ax.plot([], [], "x", color="black", ms=6, mew=1.2,
                        label=r"$w^*/(1+\lambda)$" if parametrisation == "plain" else r"soft threshold $w^*\mp\lambda$")
                # only the closed form: the λ colours are named once, in the first panel
                handles, labels = ax.get_legend_handles_labels()
                ax.legend([handles[-1]], [labels[-1]], loc="upper right")
            ax.plot(*target, "k*", ms=8, label=r"$w^*$")
            ax.plot(runs["w1"].iloc[0], runs["w2"].iloc[0], "ks", ms=4, label="start")
            ax.axhline(0, color="0.5", lw=0.8)
            ax.axvline(0, color="0.5", lw=0.8)
            name = "$w_i$" if parametrisation == "plain" else r"$w_i = a_i b_i$"
            ax.set_title(f"{titles[optimizer]}, {name}")
            ax.set_xlabel("$w_1$")
            ax.set_ylabel("$w_2$")
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(r"Two weights on $\frac{1}{2}\|w-w^*\|^2$: factorisation turns L2 into an L1-like (sparsifying) penalty")
    return fig
