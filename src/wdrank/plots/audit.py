"""Fig. 4: Frobenius side against nuclear norm per head (with y = x), the ratio per layer, the rank per layer; and the
same per-layer summaries along training (`plot_trajectory`)."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator, NullLocator

from wdrank.plots.ranks import PRODUCT_LABELS, metric_label
from wdrank.plots.style import apply_theme, figure_size, integer_axis, log_axis
from wdrank.spectra import HEAD_PRODUCTS
from wdrank.trajectory import stated_steps, trajectory_summary

TRAJECTORY_PANELS = (  # column, title, y scale (medians and means over the heads of a layer)
    ("median_nuclear_to_frobenius", "nuclear / Frobenius side", "linear"),
    ("median_balance_relative", "balance / Frobenius side", "log"),
    ("mean_effective_rank_fraction", "effective rank / $r$", "linear"),
)


def plot_audit(table: pd.DataFrame, note: str = "") -> plt.Figure:
    """Fig. 4 of one model (the `model` column of its audit table); `note` is a line under the title."""
    apply_theme()
    model = table["model"].iloc[0]
    rank_column = next(c for c in table.columns if c.startswith("rank_tol_"))
    fig, axes = plt.subplots(1, 3, figsize=figure_size(0.42))
    ax = axes[0]
    for product, marker in zip(HEAD_PRODUCTS, "os", strict=True):
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
                hue_order=list(HEAD_PRODUCTS), linewidth=0.6, legend=False)  # the colours of (c), whose legend serves
    axes[1].axhline(1, color="black", lw=1, ls="--")
    axes[1].set_ylabel(r"$\|AB^\top\|_* \,/\, \frac{1}{2}(\|A\|^2+\|B\|^2)$")
    axes[1].set_ylim(top=1.02)
    _thin_ticks(axes[1], most=6)

    # effective rank: numerical ranks of pretrained heads are often full, the spread of the spectrum is not
    per_layer = table.assign(rank_fraction=table["effective_rank"] / table["head_dim"],
                             numerical=table[rank_column] / table["head_dim"])
    sns.lineplot(data=per_layer, x="layer", y="rank_fraction", hue="product", hue_order=list(HEAD_PRODUCTS),
                 marker="o", errorbar="sd", ax=axes[2])
    sns.lineplot(data=per_layer, x="layer", y="numerical", hue="product", hue_order=list(HEAD_PRODUCTS), ls=":",
                 errorbar=None, ax=axes[2], legend=False)
    axes[2].set_ylim(0, 1.05)
    integer_axis(axes[2])
    sns.move_legend(axes[2], "upper left", bbox_to_anchor=(1, 1), title=None, frameon=False)  # legend of all panels
    for handle, product in zip(axes[2].get_legend().get_texts(), HEAD_PRODUCTS, strict=True):
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


def plot_trajectory(table: pd.DataFrame, note: str = "") -> plt.Figure:
    """Rows QK and OV; columns the median nuclear/Frobenius ratio, the median relative balance and the mean effective
    rank per layer (one line per layer, coloured by depth) against the training step of each checkpoint."""
    apply_theme()
    model = table["model"].iloc[0]
    summary = trajectory_summary(table)
    steps = np.sort(summary["step"].unique())
    by_step = stated_steps(list(table["checkpoint"].unique())) is not None  # else numbered in order
    fig, axes = plt.subplots(2, 3, figsize=figure_size(0.6), sharex=True, squeeze=False)
    layers = sorted(summary["layer"].unique())
    colours = plt.get_cmap("viridis", len(layers))
    for row, product in enumerate(HEAD_PRODUCTS):
        rows = summary[summary["product"] == product]
        for column, (metric, title, scale) in enumerate(TRAJECTORY_PANELS):
            ax = axes[row, column]
            for index, layer in enumerate(layers):
                line = rows[rows["layer"] == layer]
                ax.plot(line["step"], line[metric], color=colours(index), marker="o", markersize=2.5, lw=1)
            if scale == "log" and (rows[metric] > 0).all():
                log_axis(ax, "y", rows[metric])
            if column == 0:
                ax.axhline(1, color="black", lw=1, ls="--")
                ax.set_ylabel(PRODUCT_LABELS[product], fontsize="large")
            if column == 2:
                ax.set_ylim(0, 1.05)
            ax.set_title(f"({'abcdef'[3 * row + column]}) {title}", loc="left")
    for ax in axes[1]:
        _steps_axis(ax, steps)
        ax.set_xlabel("training step" if by_step else "checkpoint (in the order given)")
    colourbar = fig.colorbar(plt.cm.ScalarMappable(cmap=colours, norm=plt.Normalize(-0.5, len(layers) - 0.5)),
                             ax=axes, shrink=0.6, pad=0.02, ticks=MaxNLocator(nbins=6, integer=True))
    colourbar.set_label("layer")
    fig.suptitle(f"{model} along training: {len(steps)} checkpoints, {len(layers)} layers"
                 + (f"\n{textwrap.fill(note, 80)}" if note else ""))
    return fig


def _steps_axis(ax: plt.Axes, steps: np.ndarray) -> None:
    """Steps spanning decades (checkpoints are usually saved log-spaced) on a scale linear up to the first positive
    step and logarithmic above it, ticks at 0 and powers of ten; few steps or a narrow range on a linear axis."""
    first = float(steps[steps > 0].min()) if (steps > 0).any() else np.inf
    if not np.isfinite(first) or steps.max() < 20 * first:
        if len(steps) <= 5:
            ax.set_xticks(steps)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        return
    ax.set_xscale("symlog", linthresh=first, linscale=0.5)
    ax.set_xlim(left=0)
    powers = np.arange(np.ceil(np.log10(first)), np.floor(np.log10(steps.max())) + 1)
    powers = powers[::int(np.ceil(len(powers) / 4))]
    ax.set_xticks([0, *10.0 ** powers], ["0", *[f"$10^{{{int(p)}}}$" for p in powers]])
    ax.xaxis.set_minor_locator(NullLocator())
