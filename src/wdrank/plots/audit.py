"""Fig. 4: Frobenius side against nuclear norm per head (with y = x), the ratio per layer, the rank per layer."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from wdrank.plots.ranks import PRODUCT_LABELS, metric_label
from wdrank.plots.style import apply_theme


def plot_audit(table: pd.DataFrame, model: str, note: str = "") -> plt.Figure:
    apply_theme()
    rank_column = next(c for c in table.columns if c.startswith("rank_tol_"))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for product, marker in (("QK", "o"), ("OV", "s")):
        rows = table[table["product"] == product]
        ax.scatter(rows["nuclear_norm"], rows["frobenius_side"], s=14, marker=marker, alpha=0.7,
                   label=PRODUCT_LABELS[product])
    low = min(table["nuclear_norm"].min(), table["frobenius_side"].min()) * 0.9
    high = max(table["nuclear_norm"].max(), table["frobenius_side"].max()) * 1.1
    ax.plot([low, high], [low, high], color="black", lw=1, ls="--", label="$y = x$ (balanced)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"nuclear norm $\|AB^\top\|_*$")
    ax.set_ylabel(r"Frobenius side $\frac{1}{2}(\|A\|_F^2+\|B\|_F^2)$")
    ax.legend(fontsize="small")

    sns.boxplot(data=table, x="layer", y="nuclear_to_frobenius", hue="product", ax=axes[1], fliersize=2,
                hue_order=["QK", "OV"])
    axes[1].axhline(1, color="black", lw=1, ls="--")
    axes[1].set_ylabel(r"$\|AB^\top\|_* \,/\, \frac{1}{2}(\|A\|^2+\|B\|^2)$")
    axes[1].set_ylim(top=1.02)
    _thin_ticks(axes[1])

    # effective rank: numerical ranks of pretrained heads are often full, the spread of the spectrum is not
    per_layer = table.assign(rank_fraction=table["effective_rank"] / table["head_dim"],
                             numerical=table[rank_column] / table["head_dim"])
    sns.lineplot(data=per_layer, x="layer", y="rank_fraction", hue="product", hue_order=["QK", "OV"],
                 marker="o", errorbar="sd", ax=axes[2])
    sns.lineplot(data=per_layer, x="layer", y="numerical", hue="product", hue_order=["QK", "OV"], ls=":",
                 errorbar=None, ax=axes[2], legend=False)
    axes[2].set_ylim(0, 1.05)
    axes[2].set_ylabel("effective rank / head dim\n(dotted: " + metric_label(rank_column) + ")")
    for ax, letter in zip(axes, "abc", strict=True):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
    median = table.groupby("product")["nuclear_to_frobenius"].median()
    fig.suptitle(f"{model}: median nuclear/Frobenius ratio QK {median.get('QK', np.nan):.3f}, "
                 f"OV {median.get('OV', np.nan):.3f}" + (f"\n{note}" if note else ""))
    return fig


def _thin_ticks(ax, most: int = 12) -> None:
    labels = ax.get_xticklabels()
    step = max(1, len(labels) // most)
    for index, label in enumerate(labels):
        label.set_visible(index % step == 0)
