"""Rank of attention products against weight decay and training step (LM Fig. 3 left and appendix; reused by
other experiments). Input: a head-spectra table with one row per (run, step, layer, head, product)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from wdrank.plots.style import apply_theme, figure_size, integer_axis

PRODUCT_LABELS = {"QK": r"$W_Q W_K^\top$", "OV": r"$W_V W_O$"}


def metric_label(metric: str) -> str:
    if metric.startswith("rank_tol_"):
        return rf"rank ($\sigma_i > {metric.removeprefix('rank_tol_')}\,\sigma_{{max}}$)"
    return metric.replace("_", " ")


def weight_decay_axis(ax, values) -> None:
    """A log-like x axis for a weight-decay grid that may include 0 (symlog), ticked at the grid's values."""
    values = sorted(values)
    if len(values) > 1 and values[0] == 0:
        ax.set_xscale("symlog", linthresh=values[1])
    elif len(values) > 1:
        ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()


def rank_per_head(spectra: pd.DataFrame, wd_column: str, metrics: list[str], title: str) -> plt.Figure:
    """Rows = rank metrics, columns = QK / OV; per-head points (all seeds) and their mean against weight decay."""
    apply_theme()
    np.random.seed(0)  # seaborn's strip-plot jitter draws from NumPy's global RNG: fixed, the figure is reproducible
    fig, axes = plt.subplots(len(metrics), 2, figsize=figure_size(0.36 * len(metrics)), squeeze=False, sharex=True)
    order = sorted(spectra[wd_column].unique())
    for row, metric in enumerate(metrics):
        for col, product in enumerate(("QK", "OV")):
            ax = axes[row, col]
            data = spectra[spectra["product"] == product]
            sns.stripplot(data=data, x=wd_column, y=metric, order=order, hue="head", palette="tab10", dodge=False,
                          jitter=0.25, alpha=0.7, size=2.5, ax=ax, legend=(row == 0 and col == 1))
            sns.pointplot(data=data, x=wd_column, y=metric, order=order, color="black", errorbar=None,
                          markers="D", markersize=3, linestyles="-", linewidth=1, ax=ax)
            ax.set_ylim(bottom=0)
            if metric.startswith("rank_tol_"):
                integer_axis(ax, "y")  # a numerical rank counts dimensions
            ax.set_title(PRODUCT_LABELS[product])
            ax.set_xlabel(r"attention weight decay $\lambda_{SA}$")
            ax.set_ylabel(metric_label(metric))
    if axes[0, 1].get_legend():
        sns.move_legend(axes[0, 1], "upper right", title="head (mean: ◆)", fontsize="small", ncols=2)
    fig.suptitle(title)
    return fig


def _line_panels(spectra: pd.DataFrame, x: str, metric: str, hue: str, palette: str, errorbar, title: str,
                 xlabel: str, ylabel: str, legend_title: str) -> tuple[plt.Figure, list]:
    """Two panels (QK, OV) of `metric` against `x`, one line per value of `hue`."""
    apply_theme()
    fig, axes = plt.subplots(1, 2, figsize=figure_size(0.42), sharey=True)
    for ax, product in zip(axes, ("QK", "OV"), strict=True):
        # legend "full": one entry per layer or λ as it is, never a numeric scale with fractional layers
        sns.lineplot(data=spectra[spectra["product"] == product], x=x, y=metric, hue=hue, palette=palette,
                     marker="o", errorbar=errorbar, ax=ax, legend="full" if product == "OV" else False)
        ax.set_ylim(bottom=0)
        ax.set_title(PRODUCT_LABELS[product])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    if axes[1].get_legend():
        # ranks fall from the upper left (small decay, early steps): the lower left is free
        sns.move_legend(axes[1], "lower left", title=legend_title, ncols=2 if spectra[hue].nunique() > 6 else 1)
    fig.suptitle(title)
    return fig, axes


def rank_all_layers(spectra: pd.DataFrame, wd_column: str, metric: str, title: str) -> plt.Figure:
    """Mean rank over heads and seeds against weight decay (band: ± std), one line per layer; columns QK / OV."""
    fig, axes = _line_panels(spectra, wd_column, metric, "layer", "viridis", "sd", title,
                             r"attention weight decay $\lambda_{SA}$", metric_label(metric) + ", mean over heads",
                             "layer")
    for ax in axes:
        weight_decay_axis(ax, spectra[wd_column].unique())
    return fig


def rank_over_steps(spectra: pd.DataFrame, wd_column: str, metric: str, title: str) -> plt.Figure:
    """Mean rank over heads, layers and seeds against training step, one line per weight decay."""
    fig, axes = _line_panels(spectra, "step", metric, wd_column, "flare", None, title, "training step",
                             metric_label(metric) + ", mean", r"$\lambda_{SA}$")
    for ax in axes:
        integer_axis(ax)
    return fig
