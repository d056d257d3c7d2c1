"""Fig. 1: four panels from the long table of `wdrank.experiments.factorized`, the closed forms of `wdrank.theory` drawn
beside the data."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from wdrank.theory import balance_factors, fitted_balance_rate
from wdrank.plots.style import apply_theme, count, figure_size, log_axis

# Below this relative level the balance and gap are float64 rounding noise; panels stop there.
NOISE_FLOOR = 1e-13


def _per_step_median(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Median over seeds of a per-step quantity, one row per (lambda, step)."""
    per_step = table.drop_duplicates(["lambda", "seed", "step"])
    return per_step.groupby(["lambda", "step"], as_index=False).agg(time=("time", "first"), value=(column, "median"))


def _time_window(table: pd.DataFrame) -> float:
    """Time by which the slowest-decaying λ > 0 has decayed by 1/NOISE_FLOOR (exp(−2λt) = floor)."""
    positive = table.loc[table["lambda"] > 0, "lambda"]
    horizon = table["time"].max()
    if positive.empty:
        return horizon
    return min(horizon, np.log(1 / NOISE_FLOOR) / (2 * positive.min()))


def _predicted_band(ax, table: pd.DataFrame, norm, cmap) -> None:
    """Gradient descent's exact per-step balance factors from the measured start, per λ > 0: dashed where there is
    one factor, a band between the fastest and the slowest where some singular values die."""
    fastest = _per_step_median(table, "balance_discrepancy_fastest")
    slowest = _per_step_median(table, "balance_discrepancy_slowest")
    for (lam, low), (_, high) in zip(fastest.groupby("lambda"), slowest.groupby("lambda"), strict=True):
        if lam > 0:
            colour = cmap(norm(lam))
            ax.fill_between(low["time"], low["value"], high["value"], color=colour, alpha=0.3, lw=0)
            ax.plot(high["time"], high["value"], color=colour, lw=0.8, ls="--")


def _rate_inset(ax, table: pd.DataFrame) -> None:
    """Inset: the fitted balance decay rate of every run (dots) over the gradient-flow rate 2ηλ (dotted: 1), against
    λ, with gradient descent's exact per-step factors (grey band; a line where there is one)."""
    inset = ax.inset_axes([0.6, 0.5, 0.37, 0.36])  # above the slowest decay (λ = 0.1), below λ = 0's flat line
    lr, targets = table["learning_rate"].iloc[0], _targets(table)
    runs = table[table["lambda"] > 0].groupby(["lambda", "seed"])
    fitted = pd.DataFrame([(lam, fitted_balance_rate(run) / (2 * lr * lam)) for (lam, _), run in runs],
                          columns=["lambda", "ratio"])
    grid = np.linspace(fitted["lambda"].min(), fitted["lambda"].max(), 200)
    bounds = np.array([balance_factors(targets, lam, lr) for lam in grid])
    inset.fill_between(grid, -np.log(bounds[:, 1]) / (2 * lr * grid), -np.log(bounds[:, 0]) / (2 * lr * grid),
                       color="0.6", alpha=0.5, lw=0)
    inset.axhline(1, color="0.3", ls=":", lw=1)
    inset.plot(fitted["lambda"], fitted["ratio"], "k.", ms=2)
    inset.set_ylabel(r"rate / $2\eta\lambda$", fontsize=5, labelpad=1)
    inset.set_xlabel(r"$\lambda$", fontsize=5, labelpad=0)
    inset.tick_params(labelsize=5, pad=1)
    inset.set_ylim(bottom=0.99)  # the flow's 1 stays in view; no legend: too small, the caption says what is what


def _targets(table: pd.DataFrame) -> tuple[float, ...]:
    """D's diagonal: the soft-thresholded prediction max(d_i − λ/2, 0) at the smallest λ, plus λ/2 (where no value
    has died yet)."""
    first = table[table["lambda"] == table["lambda"].min()].drop_duplicates("sv_index")
    if (first["singular_value_predicted"] <= 0).any():
        raise ValueError(f"the smallest lambda, {first['lambda'].iloc[0]:g}, already zeroes a singular value: D cannot "
                         "be read off the table; include lambda = 0")
    return tuple(first["singular_value_predicted"] + first["lambda"] / 2)


def _decay_panel(ax, table, column, norm, cmap, ylabel, predicted: bool = False) -> None:
    medians = _per_step_median(table, column)
    for lam, curve in medians.groupby("lambda"):
        ax.plot(curve["time"], curve["value"].clip(lower=NOISE_FLOOR), color=cmap(norm(lam)), lw=1.6)
    if predicted:
        _predicted_band(ax, table, norm, cmap)
        _rate_inset(ax, table)
    log_axis(ax, "y", [NOISE_FLOOR, 10 * medians["value"].max()])
    ax.set_ylim(NOISE_FLOOR, 10 * medians["value"].max())
    ax.set_xlim(0, _time_window(table))
    ax.set_xlabel(r"time $t = \eta \cdot$ step")
    ax.set_ylabel(ylabel)


def _final_singular_values_panel(ax, table: pd.DataFrame) -> None:
    final = table[table["step"] == table.groupby(["lambda", "seed"])["step"].transform("max")]
    summary = final.groupby(["sv_index", "lambda"], as_index=False).agg(
        measured=("singular_value", "mean"), spread=("singular_value", "std"), predicted=("singular_value_predicted", "first")
    )
    lambdas = np.linspace(0, summary["lambda"].max(), 200)
    palette = plt.get_cmap("tab10")
    for index, per_index in summary.groupby("sv_index"):
        colour = palette(index - 1)
        ax.errorbar(per_index["lambda"], per_index["measured"], yerr=per_index["spread"].fillna(0), fmt="o",
                    color=colour, ms=5, label=rf"$\sigma_{index}$")
        top = per_index["predicted"].iloc[0] + per_index["lambda"].iloc[0] / 2  # d_i
        ax.plot(lambdas, np.maximum(top - lambdas / 2, 0), color=colour, lw=1.0, ls="--")
    ax.plot([], [], color="0.3", ls="--", lw=1.0, label=r"$(d_i-\lambda/2)_+$")
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel(rf"singular values of $AB^\top$ at $t={final['time'].max():g}$")
    # values fall with λ: the upper right is empty; a compact legend fits there
    ax.legend(loc="upper right", fontsize=6, handlelength=1.2, labelspacing=0.25, borderaxespad=0.3)


def _trajectory_panel(ax, table: pd.DataFrame, trajectory_lambda: float) -> None:
    run = table[np.isclose(table["lambda"], trajectory_lambda) & (table["step"] > 0)]
    if run.empty:
        raise ValueError(f"lambda={trajectory_lambda} is not in the table; choose one of {sorted(table['lambda'].unique())}")
    palette = plt.get_cmap("tab10")
    for index, per_index in run.groupby("sv_index"):
        median = per_index.groupby("time", as_index=False)["singular_value"].median()
        ax.plot(median["time"], median["singular_value"], color=palette(index - 1), lw=1.6, label=rf"$\sigma_{index}$")
        ax.axhline(per_index["singular_value_predicted"].iloc[0], color=palette(index - 1), lw=1.0, ls="--")
    log_axis(ax, "x", run["time"])
    ax.set_xlabel(r"time $t = \eta \cdot$ step")
    ax.set_ylabel(rf"singular values of $AB^\top$, $\lambda={trajectory_lambda:g}$")
    # colours and dashed predictions as in panel (c), whose legend serves both


def plot_factorized(table: pd.DataFrame, trajectory_lambda: float) -> plt.Figure:
    """The paper's Fig. 1 (a–d), medians over seeds; dashed lines are the closed-form predictions."""
    apply_theme()
    fig, axes = plt.subplots(2, 2, figsize=figure_size(0.78))
    lambdas = sorted(table["lambda"].unique())
    norm = Normalize(vmin=min(lambdas), vmax=max(lambdas))
    cmap = plt.get_cmap("viridis")
    _decay_panel(axes[0, 0], table, "gap", norm, cmap, r"gap $\frac{1}{2}(\|A\|^2+\|B\|^2)-\|AB^\top\|_*$")
    _decay_panel(axes[0, 1], table, "balance_discrepancy", norm, cmap, r"balance $\|A^\top A-B^\top B\|_F$",
                 predicted=True)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[0, :], label=r"$\lambda$", shrink=0.9)
    _final_singular_values_panel(axes[1, 0], table)
    _trajectory_panel(axes[1, 1], table, trajectory_lambda)
    for ax, letter in zip(axes.flat, "abcd", strict=True):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
    seeds = table["seed"].nunique()
    fig.suptitle(rf"Gradient descent on $\|AB^\top-D\|^2+\frac{{\lambda}}{{2}}(\|A\|^2+\|B\|^2)$, "
                 rf"$\eta={table['learning_rate'].iloc[0]:g}$, {count(seeds, 'seed')}")
    return fig
