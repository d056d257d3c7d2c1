"""Rank of attention products against weight decay and training step (LM Fig. 3 left and appendix; reused by
other experiments), with 95% intervals over seeds and paired comparisons with λ = 0 where runs are compared. Input: a
head-spectra table with one row per (run, step, layer, head, product)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from wdrank.plots.style import apply_theme, figure_size, integer_axis
from wdrank.spectra import HEAD_PRODUCTS
from wdrank.statistics import metric_summary, resolved

INTERVALS_NOTE = r"bars: 95% interval over seeds; *: differs from $\lambda=0$ (paired by seed, 95%)"

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
        ax.set_xlim(-0.5 * values[1], 1.4 * values[-1])  # room for the markers at both ends
    elif len(values) > 1:
        ax.set_xscale("log")
        ax.set_xlim(values[0] / 1.4, 1.4 * values[-1])
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()


def mean_with_intervals(ax, per_run: pd.DataFrame, axis: str, value: str, positions: dict | None = None,
                        marker: str = "o") -> None:
    """The mean of `value` over seeds at each `axis` value (one row per run), with its 95% t interval as bars, and a
    '*' over each mean whose paired difference from the smallest `axis` value (seed by seed) is resolved: its
    interval excludes 0 and p < 0.05 (`wdrank.statistics.resolved`). `positions` maps axis values to x (categorical axes)."""
    summary = metric_summary(per_run, [value], axis)
    x = summary[axis].map(positions) if positions else summary[axis]
    bars = np.nan_to_num(np.abs(summary[["ci_low", "ci_high"]].to_numpy().T - summary["mean"].to_numpy()))
    ax.errorbar(x, summary["mean"], yerr=bars, color="black", marker=marker, markersize=3, linewidth=1, capsize=2,
                zorder=5)
    highest = np.fmax(summary["ci_high"], per_run.groupby(axis)[value].max().to_numpy())  # above interval and seeds
    marked = resolved(summary["difference_ci_low"], summary["difference_ci_high"], summary["p_value"])
    for x_value, top in zip(x[marked], highest[marked], strict=True):
        ax.annotate("*", (x_value, top), ha="center", va="bottom")


def rank_and_score(per_run: pd.DataFrame, metric: str, score: str, score_label: str, score_limits: tuple | None,
                   top: float, title: str) -> plt.Figure:
    """Three panels against the attention weight decay: the mean QK and OV rank of each run (`per_run`: one row per
    run with QK_<metric> and OV_<metric>, and `score`), then the score; dots are seeds, lines their mean with
    intervals and paired comparisons (`mean_with_intervals`). `top`: the largest possible rank."""
    apply_theme()
    fig, axes = plt.subplots(1, 3, figsize=figure_size(0.36))
    panels = [(f"QK_{metric}", PRODUCT_LABELS["QK"], metric_label(metric), (0, top * 1.04)),
              (f"OV_{metric}", PRODUCT_LABELS["OV"], "", (0, top * 1.04)),
              (score, score_label, score_label, score_limits)]
    for ax, (column, panel_title, ylabel, limits) in zip(axes, panels, strict=True):
        mean_with_intervals(ax, per_run, "wd_attn", column)
        sns.scatterplot(data=per_run, x="wd_attn", y=column, color="tab:blue", alpha=0.6, s=8, ax=ax, legend=False,
                        zorder=6)  # seeds over their mean
        weight_decay_axis(ax, per_run["wd_attn"].unique())
        low, high = ax.get_ylim()
        ax.set_ylim(*(limits or (low, high + 0.12 * (high - low))))  # headroom for the * over the last interval
        ax.set(title=panel_title, xlabel=r"attention weight decay $\lambda$", ylabel=ylabel)
    fig.suptitle(f"{title}\n{INTERVALS_NOTE}")
    return fig


def rank_per_head(spectra: pd.DataFrame, wd_column: str, metrics: list[str], title: str) -> plt.Figure:
    """Rows = rank metrics, columns = QK / OV; per-head points (all seeds) and, against weight decay, the mean over
    seeds of each run's mean over heads, with intervals and paired comparisons (`mean_with_intervals`)."""
    apply_theme()
    np.random.seed(0)  # seaborn's strip-plot jitter draws from NumPy's global RNG: fixed, the figure is reproducible
    fig, axes = plt.subplots(len(metrics), 2, figsize=figure_size(0.36 * len(metrics)), squeeze=False, sharex=True)
    order = sorted(spectra[wd_column].unique())
    for row, metric in enumerate(metrics):
        for col, product in enumerate(HEAD_PRODUCTS):
            ax = axes[row, col]
            data = spectra[spectra["product"] == product]
            sns.stripplot(data=data, x=wd_column, y=metric, order=order, hue="head", palette="tab10", dodge=False,
                          jitter=0.25, alpha=0.7, size=2.5, ax=ax, legend=(row == 0 and col == 1))
            per_run = data.groupby([wd_column, "seed"], as_index=False)[metric].mean()
            mean_with_intervals(ax, per_run, wd_column, metric, {v: i for i, v in enumerate(order)}, marker="D")
            # no rank exceeds the head dimension: intervals of few seeds reaching past it are cut at the frame
            ax.set_ylim(0, min(ax.get_ylim()[1], 1.08 * data["head_dim"].max()))
            if metric.startswith("rank_tol_"):
                integer_axis(ax, "y")  # a numerical rank counts dimensions
            ax.set_title(PRODUCT_LABELS[product])
            ax.set_xlabel(r"attention weight decay $\lambda_{SA}$")
            ax.set_ylabel(metric_label(metric))
    if axes[0, 1].get_legend():
        sns.move_legend(axes[0, 1], "upper right", title="head (mean: ◆)", fontsize="small", ncols=2)
    fig.suptitle(f"{title}\n{INTERVALS_NOTE}")
    return fig


def _line_panels(spectra: pd.DataFrame, x: str, metric: str, hue: str, palette: str, errorbar, title: str,
                 xlabel: str, ylabel: str, legend_title: str) -> tuple[plt.Figure, list]:
    """Two panels (QK, OV) of `metric` against `x`, one line per value of `hue`."""
    apply_theme()
    fig, axes = plt.subplots(1, 2, figsize=figure_size(0.42), sharey=True)
    for ax, product in zip(axes, HEAD_PRODUCTS, strict=True):
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
