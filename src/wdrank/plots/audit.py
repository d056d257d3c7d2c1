"""Fig. 4: Frobenius side against nuclear norm per head (with y = x), the ratio per layer, the rank per layer."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from wdrank.plots.ranks import PRODUCT_LABELS, metric_label
from wdrank.plots.style import apply_theme, figure_size, integer_axis, log_axis


def plot_audit(table: pd.DataFrame, model: str, note: str = "") -> plt.Figure:
    apply_theme()
    rank_column = next(c for c in table.columns if c.startswith("rank_tol_"))
    fig, axes = plt.subplots(1, 3, figsize=figure_size(0.42))
    ax = axes[0]
    for product, marker in (("QK", "o"), ("OV", "s")):
        rows = table[table["product"] == product]
        ax.scatter(rows["nuclear_norm"], rows["frobenius_side"], s=6, marker=marker, alpha=0.7)  # colours: (c)
    low = min(table["nuclear_norm"].min(), table["frobenius_side"].min()) * 0.9
    high = max(table["nuclear_norm"].max(), table["frobenius_side"].max()) * 1.1
    ax.plot([low, high], [low, high], color="black", lw=1, ls="--")
    for axis in ("x", "y"):  # one range for both, so that y = x is the diagonal
        log_axis(ax, axis, [low, high])
    ax.set_xlabel(r"nuclear norm $\|AB^\top\|_*$")
    ax.set_ylabel(r"Frobenius side $\frac{1}{2}(\|A\|_F^2+\|B\|_F^2)$")
    # the Frobenius side is never below the nuclear norm: the lower-right triangle is always empty
    ax.text(0.96, 0.04, "dashed: $y = x$\n(balanced)", transform=ax.transAxes, ha="right", va="bottom",
            fontsize="small")

    sns.boxplot(data=table, x="layer", y="nuclear_to_frobenius", hue="product", ax=axes[1], fliersize=1.5,
                hue_order=["QK", "OV"], linewidth=0.6, legend=False)  # the colours of (c), whose legend serves
    axes[1].axhline(1, color="black", lw=1, ls="--")
    axes[1].set_ylabel(r"$\|AB^\top\|_* \,/\, \frac{1}{2}(\|A\|^2+\|B\|^2)$")
    axes[1].set_ylim(top=1.02)
    _thin_ticks(axes[1], most=6)

    # effective rank: numerical ranks of pretrained heads are often full, the spread of the spectrum is not
    per_layer = table.assign(rank_fraction=table["effective_rank"] / table["head_dim"],
                             numerical=table[rank_column] / table["head_dim"])
    sns.lineplot(data=per_layer, x="layer", y="rank_fraction", hue="product", hue_order=["QK", "OV"],
                 marker="o", errorbar="sd", ax=axes[2])
    sns.lineplot(data=per_layer, x="layer", y="numerical", hue="product", hue_order=["QK", "OV"], ls=":",
                 errorbar=None, ax=axes[2], legend=False)
    axes[2].set_ylim(0, 1.05)
    integer_axis(axes[2])
    sns.move_legend(axes[2], "upper left", bbox_to_anchor=(1, 1), title=None, frameon=False)  # legend of all panels
    for handle, product in zip(axes[2].get_legend().get_texts(), ("QK", "OV"), strict=True):
        handle.set_text(PRODUCT_LABELS[product])
    axes[2].set_ylabel("effective rank / head dim\n(dotted: " + metric_label(rank_column) + ")")
    for ax, letter in zip(axes, "abc", strict=True):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
    median = table.groupby("product")["nuclear_to_frobenius"].median()
    fig.suptitle(f"{model}: median nuclear/Frobenius ratio QK {median.get('QK', np.nan):.3f}, "
                 f"OV {median.get('OV', np.nan):.3f}" + (f"\n{textwrap.fill(note, 80)}" if note else ""))
    return fig


def _thin_ticks(ax, most: int) -> None:
    """Label at most about `most` of a categorical axis's ticks, evenly spaced."""
    labels = ax.get_xticklabels()
    step = max(1, len(labels) // most)
    for index, label in enumerate(labels):
        label.set_visible(index % step == 0)
