"""LoRA figures: the audit of one adapter (Fig. 4 for factor pairs B A), and the LoRA sweep: rank used out of r and
perplexity against λ_LoRA (as Fig. 3), balance against the decay clock λ·Σlr (as Fig. 1(b))."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from wdrank.plots.ranks import INTERVALS_NOTE, mean_with_intervals, metric_label, weight_decay_axis
from wdrank.plots.style import apply_theme, count, figure_size, integer_axis, log_axis
from wdrank.schedule import Schedule
from wdrank.statistics import adapter_run_means

LAMBDA_LABEL = r"adapter weight decay $\lambda_{LoRA}$"
CLOCK_LABEL = r"decay clock $\lambda \sum_s \eta_s$"


def plot_adapter_audit(table: pd.DataFrame, note: str = "") -> plt.Figure:
    """One adapter (`wdrank.lora` table with its `model` column): Frobenius side against nuclear norm per module
    (y = x: balanced), and the rank of B A used out of r per layer and module kind."""
    apply_theme()
    rank_column = next(c for c in table.columns if c.startswith("rank_tol_"))
    fig, axes = plt.subplots(1, 2, figsize=figure_size(0.42))
    sns.scatterplot(data=table, x="nuclear_norm", y="frobenius_side", hue="kind", s=14, alpha=0.8, ax=axes[0])
    positive = table[["nuclear_norm", "frobenius_side"]].to_numpy()
    positive = positive[positive > 0]
    low, high = (positive.min() * 0.9, positive.max() * 1.1) if positive.size else (1e-3, 1.0)
    axes[0].plot([low, high], [low, high], color="black", lw=1, ls="--")
    for axis in ("x", "y"):
        log_axis(axes[0], axis, [low, high])
    axes[0].set(xlabel=r"nuclear norm $\|BA\|_*$", ylabel=r"$\frac{1}{2}(\|A\|_F^2+\|B\|_F^2)$")
    axes[0].legend(title=None, fontsize="small")
    per_module = table.assign(numerical=table[rank_column] / table["r"], effective=table["effective_rank"] / table["r"])
    x = "layer" if per_module["layer"].notna().any() else "kind"
    sns.lineplot(data=per_module, x=x, y="effective", hue="kind", marker="o", errorbar=None, ax=axes[1])
    sns.lineplot(data=per_module, x=x, y="numerical", hue="kind", ls=":", errorbar=None, ax=axes[1], legend=False)
    axes[1].set(ylim=(0, 1.05), ylabel="effective rank / r\n(dotted: " + metric_label(rank_column) + " / r)")
    if x == "layer":
        integer_axis(axes[1])
    axes[1].legend(title=None, fontsize="small")
    for ax, letter in zip(axes, "ab", strict=True):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
    ratio = table["nuclear_to_frobenius"].median()
    fig.suptitle(f"{table['model'].iloc[0]}: {count(len(table), 'adapted module')}, median nuclear/Frobenius "
                 f"{ratio:.3f}" + (f"\n{textwrap.fill(note, 80)}" if note else ""))
    return fig


def _cell(spectra: pd.DataFrame, lora_r: int, lora_lr: float) -> pd.DataFrame:
    """The runs of one (r, lr) cell of the sweep (the figures show one; the table every cell)."""
    cell = spectra[(spectra["lora_r"] == lora_r) & np.isclose(spectra["lora_lr"], lora_lr)]
    if cell.empty:
        raise ValueError(f"no LoRA runs at r = {lora_r}, lr = {lora_lr:g} (the sweep has r "
                         f"{sorted(spectra['lora_r'].unique())}, lr {sorted(spectra['lora_lr'].unique())})")
    return cell


def lora_rank_and_perplexity(spectra: pd.DataFrame, runs: pd.DataFrame, lora_r: int, lora_lr: float,
                             rank_metric: str) -> plt.Figure:
    """Against λ_LoRA, at the final step of each run: the numerical and effective rank of B A used out of r (mean
    over adapted modules) and test perplexity (dashed: the base model's), seeds as dots, their mean with 95%
    intervals and paired comparisons with λ_LoRA = 0."""
    apply_theme()
    cell = _cell(spectra, lora_r, lora_lr)
    means = adapter_run_means(cell[cell["step"] == cell["step"].max()], rank_metric)
    per_run = means.merge(runs[["lora_r", "lora_lr", "wd_lora", "seed", "test_perplexity", "base_test_perplexity"]],
                          on=["lora_r", "lora_lr", "wd_lora", "seed"])
    fig, axes = plt.subplots(1, 3, figsize=figure_size(0.36))
    panels = [("rank_used", f"{metric_label(rank_metric)} / r", (0, 1.08)),
              ("effective_rank_used", "effective rank / r", (0, 1.08)),
              ("test_perplexity", "test perplexity", None)]
    for ax, (column, label, limits) in zip(axes, panels, strict=True):
        mean_with_intervals(ax, per_run, "wd_lora", column)
        sns.scatterplot(data=per_run, x="wd_lora", y=column, color="tab:blue", alpha=0.6, s=8, ax=ax, legend=False,
                        zorder=6)
        weight_decay_axis(ax, per_run["wd_lora"].unique())
        ax.set(xlabel=LAMBDA_LABEL, ylabel=label)
        if limits:
            ax.set_ylim(*limits)
    axes[2].axhline(per_run["base_test_perplexity"].mean(), color="grey", ls="--", lw=1, label="base, no adapter")
    axes[2].legend(fontsize="small")
    steps = int(cell["step"].max())
    fig.suptitle(f"LoRA r = {lora_r}, lr = {lora_lr:g}, {steps} steps, {count(per_run['seed'].nunique(), 'seed')}: "
                 f"rank of B A, all adapted modules\n{INTERVALS_NOTE.replace('lambda', 'lambda_{LoRA}')}")
    return fig


def lora_balance(spectra: pd.DataFrame, lora_r: int, lora_lr: float, steps: int, warmup_steps: int,
                 min_lr_ratio: float) -> plt.Figure:
    """Relative balance ‖A Aᵀ − Bᵀ B‖ / ½(‖A‖² + ‖B‖²) and nuclear / Frobenius against the decay clock λ·Σlr, a line
    per λ_LoRA > 0 (mean over modules and seeds), with the laws of a factor pair from its start: AdamW's e^{−λΣη}
    (wdrank.theory.adamw_balance, exact for a scalar pair) and gradient flow's e^{−2λΣη}."""
    apply_theme()
    schedule = Schedule(steps=steps, batch_size=1, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
    means = adapter_run_means(_cell(spectra, lora_r, lora_lr), "effective_rank")
    decayed = means[means["wd_lora"] > 0].copy()
    if decayed.empty:
        raise ValueError("the LoRA sweep has no λ_LoRA > 0: no decay clock to draw")
    cumulative = np.asarray(schedule.cumulative_lr(lora_lr))
    decayed["clock"] = decayed["wd_lora"] * cumulative[decayed["step"].to_numpy(dtype=int)]
    decayed = decayed.groupby(["wd_lora", "step"], as_index=False)[["clock", "balance_relative",
                                                                    "nuclear_to_frobenius"]].mean()
    fig, axes = plt.subplots(1, 2, figsize=figure_size(0.42))
    palette = sns.color_palette("viridis", decayed["wd_lora"].nunique())
    for colour, (lam, rows) in zip(palette, decayed.groupby("wd_lora"), strict=True):
        axes[0].plot(rows["clock"], rows["balance_relative"], marker="o", ms=3, color=colour, label=f"{lam:g}")
        axes[1].plot(rows["clock"], rows["nuclear_to_frobenius"], marker="o", ms=3, color=colour)
    start = decayed.loc[decayed["step"] == decayed["step"].min(), "balance_relative"].mean()
    clock = np.linspace(0, decayed["clock"].max(), 100)
    axes[0].plot(clock, start * np.exp(-clock), color="black", ls="--", lw=1,
                 label=r"AdamW pair $e^{-\lambda\Sigma\eta}$")
    axes[0].plot(clock, start * np.exp(-2 * clock), color="black", ls=":", lw=1,
                 label=r"gradient flow $e^{-2\lambda\Sigma\eta}$")
    axes[0].set_yscale("log")
    axes[0].set_ylim(bottom=max(1e-3, 0.5 * decayed["balance_relative"].min()))
    axes[0].set(xlabel=CLOCK_LABEL, ylabel=r"$\|AA^\top - B^\top B\|_F \,/\, \frac{1}{2}(\|A\|^2+\|B\|^2)$")
    axes[0].legend(title=r"$\lambda_{LoRA}$", fontsize="small", loc="lower right")
    axes[1].axhline(1, color="black", lw=1, ls="--")
    axes[1].set(xlabel=CLOCK_LABEL, ylabel=r"$\|BA\|_* \,/\, \frac{1}{2}(\|A\|^2+\|B\|^2)$", ylim=(0, 1.05))
    for ax, letter in zip(axes, "ab", strict=True):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
    fig.suptitle(f"LoRA r = {lora_r}, lr = {lora_lr:g}: balance of the factor pairs along fine-tuning\n"
                 "(mean over modules and seeds)")
    return fig
