"""`wdrank figure NAME`: draw one figure of the paper from its result tables (CSV, or the committed .csv.gz cache).

What a figure shows (which runs, steps, layers; its title) is decided in its `wdrank.plots` module; here each
figure only reads its tables and writes the two files it is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from wdrank.commands import add_command, add_group, describe_group, figure_arguments

COMMANDS = {"figure": "draw one figure of the paper from its result tables (e.g. results/cache/*.csv.gz)"}


def _read(path: str):
    import pandas as pd

    return pd.read_csv(path)


def _save(figure, args: argparse.Namespace) -> None:
    from wdrank.plots.style import save_figure

    save_figure(figure, args.pdf, args.png)


def _at_width(handler: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    """A figure's handler, drawing at the width asked for (--width) before anything else."""

    def draw(args: argparse.Namespace) -> None:
        from wdrank.plots.style import set_width

        set_width(args.width)
        handler(args)

    return draw


def _fig1_factorized_matrices(args: argparse.Namespace) -> None:
    from wdrank.plots.factorized import plot_factorized

    _save(plot_factorized(_read(args.table), args.trajectory_lambda), args)


def _fig3_lm_rank_per_head(args: argparse.Namespace) -> None:
    from wdrank.plots.lm import fig3_rank_per_head

    _save(fig3_rank_per_head(_read(args.spectra), args.layer, args.wd_mlp, args.rank_metric), args)


def _figA_lm_rank_all_layers(args: argparse.Namespace) -> None:
    from wdrank.plots.lm import figA_rank_all_layers

    _save(figA_rank_all_layers(_read(args.spectra), args.wd_mlp, args.rank_metric), args)


def _lm_rank_vs_step(args: argparse.Namespace) -> None:
    from wdrank.plots.lm import rank_vs_step

    _save(rank_vs_step(_read(args.spectra), args.wd_mlp, args.rank_metric), args)


def _lm_rank_and_perplexity(args: argparse.Namespace) -> None:
    from wdrank.plots.lm import rank_and_perplexity

    _save(rank_and_perplexity(_read(args.spectra), _read(args.runs), args.wd_mlp, args.rank_metric), args)


def _fig3_vit_rank(args: argparse.Namespace) -> None:
    from wdrank.plots.vit import fig3_vit_rank

    _save(fig3_vit_rank(_read(args.spectra), _read(args.runs), args.rank_metric), args)


def _figA_vit_rank_heatmap(args: argparse.Namespace) -> None:
    from wdrank.plots.vit import figA_vit_rank_heatmap

    _save(figA_vit_rank_heatmap(_read(args.spectra), _read(args.runs), args.rank_metric), args)


def _fig2_toy_transformer(args: argparse.Namespace) -> None:
    from wdrank.plots.toy import plot_toy

    _save(plot_toy(_read(args.spectra), _read(args.runs), args.rank_metric, args.lr, args.optimizer), args)


def _figA_scalar_pair_trajectories(args: argparse.Namespace) -> None:
    from wdrank.plots.toy import plot_scalar_pair

    _save(plot_scalar_pair(_read(args.table), tuple(args.target)), args)


def _learning_curves(args: argparse.Namespace) -> None:
    from wdrank.plots.curves import plot_learning_curves

    _save(plot_learning_curves(_read(args.curves), args.experiment), args)


def _fig4_audit(args: argparse.Namespace) -> None:
    from wdrank.plots.audit import plot_audit

    table = _read(args.table)
    _save(plot_audit(table, table["model"].iloc[0], args.note), args)


def _audit_trajectory(args: argparse.Namespace) -> None:
    from wdrank.plots.audit import plot_trajectory

    table = _read(args.table)
    _save(plot_trajectory(table, table["model"].iloc[0], args.note), args)


def register(commands: argparse._SubParsersAction) -> None:
    parser, figures = add_group(commands, "figure", COMMANDS["figure"], "FIGURE")

    def figure(name: str, description: str, handler: Callable, **tables: str) -> argparse.ArgumentParser:
        """A figure's parser: its input tables (--name help), then --pdf and --png after its own options."""
        sub = add_command(figures, name, description, _at_width(handler))
        for table, help_text in tables.items():
            sub.add_argument(f"--{table}", required=True, help=help_text)
        return sub

    def rank_metric(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--rank-metric", required=True, help="the rank column drawn, e.g. rank_tol_0.01")

    def wd_mlp(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--wd-mlp", type=float, required=True, help="the λ_MLP held fixed")

    sub = figure("fig1_factorized_matrices", "Fig. 1: gap, balance and singular values of two factor matrices",
                 _fig1_factorized_matrices, table="fig1_factorized_matrices.csv")
    sub.add_argument("--trajectory-lambda", type=float, required=True, help="the λ of panel (d)")
    figure_arguments(sub)

    sub = figure("fig3_lm_rank_per_head", "Fig. 3 (left): rank per head of one layer against λ_SA",
                 _fig3_lm_rank_per_head, spectra="lm_head_spectra.csv")
    sub.add_argument("--layer", type=int, required=True, help="the layer shown")
    wd_mlp(sub)
    rank_metric(sub)
    figure_arguments(sub)

    sub = figure("figA_lm_rank_all_layers", "appendix: mean rank over heads against λ_SA, a line per layer",
                 _figA_lm_rank_all_layers, spectra="lm_head_spectra.csv")
    wd_mlp(sub)
    rank_metric(sub)
    figure_arguments(sub)

    sub = figure("lm_rank_vs_step", "mean rank against training step, a line per λ_SA", _lm_rank_vs_step,
                 spectra="lm_head_spectra.csv")
    wd_mlp(sub)
    rank_metric(sub)
    figure_arguments(sub)

    sub = figure("lm_rank_and_perplexity", "Table 1's finding: mean QK/OV rank and test perplexity against λ_SA, "
                 "paired by seed", _lm_rank_and_perplexity, runs="lm_runs.csv", spectra="lm_head_spectra.csv")
    wd_mlp(sub)
    rank_metric(sub)
    figure_arguments(sub)

    for name, description, handler in (
            ("fig3_vit_rank", "Fig. 3 (right): ViT mean rank and test accuracy against λ", _fig3_vit_rank),
            ("figA_vit_rank_heatmap", "ViT mean rank per layer and λ", _figA_vit_rank_heatmap)):
        sub = figure(name, description, handler, runs="vit_runs.csv", spectra="vit_head_spectra.csv")
        rank_metric(sub)
        figure_arguments(sub)

    sub = figure("fig2_toy_transformer", "Fig. 2: toy Transformer rank, balance, gap and loss against λ",
                 _fig2_toy_transformer, runs="fig2_toy_runs.csv", spectra="fig2_toy_head_spectra.csv")
    rank_metric(sub)
    sub.add_argument("--lr", type=float, required=True, help="the runs' learning rate (the e^{-2 lr λ t} line)")
    sub.add_argument("--optimizer", required=True, help="the runs' optimizer, for the title")
    figure_arguments(sub)

    sub = figure("figA_scalar_pair_trajectories", "appendix: two scalars, plain vs factorised, AdamW vs Adam + L2",
                 _figA_scalar_pair_trajectories, table="figA_scalar_pair_trajectories.csv")
    sub.add_argument("--target", type=float, nargs=2, required=True, help="w* of the runs")
    figure_arguments(sub)

    sub = figure("learning_curves", "training loss, held-out loss and learning rate against the step, every run",
                 _learning_curves, curves="<prefix>_learning_curves.csv")
    sub.add_argument("--experiment", required=True, choices=["lm", "vit", "toy"], help="the experiment, for the title")
    figure_arguments(sub)

    sub = figure("fig4_audit", "Fig. 4 of one model: Frobenius side vs nuclear norm, ratio and rank per layer",
                 _fig4_audit, table="audit_<model>.csv")
    sub.add_argument("--note", default="", help="a line added under the title (e.g. quantisation)")
    figure_arguments(sub)

    sub = figure("audit_trajectory", "an audit along training: ratio, balance and rank per layer against the step",
                 _audit_trajectory, table="audit_trajectory_<model>.csv")
    sub.add_argument("--note", default="", help="a line added under the title")
    figure_arguments(sub)
    describe_group(parser, figures)
