"""Learning curves of a trained experiment: training loss, held-out loss and learning rate against the step, a
colour per weight decay (a line style per λ_MLP where that is swept too), every seed a thin line under their mean."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from wdrank.plots.style import apply_theme, count, figure_size, log_axis

# Each experiment's name in the title, and the held-out loss its evaluation logs (wdrank.experiments.*.evaluate).
EXPERIMENTS = {"lm": "language model", "vit": "ViT", "toy": "toy Transformer", "lora": "LoRA fine-tuning"}
HELD_OUT = {"validation_loss": "validation loss", "test_loss": "test loss", "eval_loss": "evaluation loss"}
AXIS_LABELS = {"wd_attn": r"$\lambda_{SA}$", "wd_mlp": r"$\lambda_{MLP}$", "wd_lora": r"$\lambda_{LoRA}$",
               "lora_r": "$r$", "lora_lr": "lr"}
COLOUR_AXES = ("wd_attn", "wd_lora")  # the weight decay a sweep is about: one colour per value
STYLE_AXES = ("wd_mlp", "lora_r", "lora_lr")  # a line style per value of the first of these that is swept


def _held_out_column(curves: pd.DataFrame) -> str:
    present = [column for column in HELD_OUT if column in curves.columns]
    if len(present) != 1:
        raise ValueError(f"the learning-curves table needs exactly one held-out loss of {sorted(HELD_OUT)}, "
                         f"got {present or 'none'}")
    return present[0]


def plot_learning_curves(curves: pd.DataFrame, experiment: str) -> plt.Figure:
    """Three panels against the step: training loss, held-out loss (log scales) and learning rate. Colour: λ_SA (a
    LoRA sweep's λ_LoRA); line style: λ_MLP (a LoRA sweep's r or lr) where swept; thick line: the mean over seeds;
    thin lines: each seed."""
    apply_theme()
    held_out = _held_out_column(curves)
    colour_axis = next(axis for axis in COLOUR_AXES if axis in curves.columns)
    styles = [axis for axis in STYLE_AXES if axis in curves.columns and curves[axis].nunique() > 1][:1]
    decays = sorted(curves[colour_axis].unique())
    palette = dict(zip(decays, sns.color_palette("viridis", len(decays)), strict=True))
    dashes = dict(zip(sorted(curves[styles[0]].unique()) if styles else [None],
                      itertools.cycle(["-", "--", ":", "-."])))
    panels = [("train_loss", "training loss"), (held_out, HELD_OUT[held_out]), ("lr", "learning rate")]
    fig, axes = plt.subplots(1, 3, figsize=figure_size(aspect=0.36))
    for ax, (column, label) in zip(axes, panels, strict=True):
        logged = curves.dropna(subset=[column])
        for cell, runs in logged.groupby([colour_axis, *styles]):
            decay, style = (cell[0], cell[1]) if styles else (cell[0], None)
            colour, dash = palette[decay], dashes[style]
            for _, seed in runs.groupby("seed"):
                ax.plot(seed["step"], seed[column], color=colour, linestyle=dash, linewidth=0.5, alpha=0.35)
            mean = runs.groupby("step")[column].mean()
            name = ", ".join(f"{AXIS_LABELS[axis]}$={value:g}$" for axis, value in zip([colour_axis, *styles], cell,
                                                                                         strict=True))
            ax.plot(mean.index, mean.to_numpy(), color=colour, linestyle=dash, label=name)
        if column != "lr":
            log_axis(ax, "y", logged[column])
        ax.set(xlabel="step", ylabel=label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle(f"Learning curves, {EXPERIMENTS[experiment]}: thick the mean over "
                 f"{count(curves['seed'].nunique(), 'seed')}, thin each seed")
    return fig
