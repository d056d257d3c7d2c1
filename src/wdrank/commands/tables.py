"""`wdrank table NAME`: build one paper table from result tables (CSV, or the committed .csv.gz cache)."""

from __future__ import annotations

import argparse

from wdrank.commands import add_command, add_group, describe_group

COMMANDS = {"table": "build a paper table (Table 1, the ViT rank table, the audit summary) from result tables"}


def _table1_lm_perplexity(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.tables import write_perplexity_tables

    write_perplexity_tables(pd.read_csv(args.runs), args.csv, args.md, args.tex)


def _rank_labels(metric: str) -> dict[str, str]:
    return {f"{product}_{metric}": f"{product} rank" for product in ("QK", "OV")} | {"test_accuracy": "test accuracy"}


def _lm_rank(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.tables import lm_rank_table, write_summary_tables

    table = lm_rank_table(pd.read_csv(args.spectra), args.rank_metric)
    write_summary_tables(table, args.csv, args.md, _rank_labels(args.rank_metric))


def _fig3_vit_rank(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.tables import rank_accuracy_table, write_summary_tables

    table = rank_accuracy_table(pd.read_csv(args.spectra), pd.read_csv(args.runs), args.rank_metric)
    write_summary_tables(table, args.csv, args.md, _rank_labels(args.rank_metric))


def _fig4_audit_summary(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.aggregate import write_csv
    from wdrank.tables import audit_summary

    tables = [pd.read_csv(path) for path in args.tables]
    write_csv(pd.concat([audit_summary(t, t["model"].iloc[0]) for t in tables], ignore_index=True), args.csv)


def register(commands: argparse._SubParsersAction) -> None:
    parser, tables = add_group(commands, "table", COMMANDS["table"], "TABLE")

    sub = add_command(tables, "table1_lm_perplexity", "Table 1: test perplexity per (λ_SA, λ_MLP)",
                      _table1_lm_perplexity)
    sub.add_argument("--runs", required=True, help="lm_runs.csv")
    sub.add_argument("--csv", required=True, help="the grid, one row per cell: mean, std, seeds, 95%% interval, "
                     "paired difference from λ_SA = 0 with its interval and p-values, best")
    sub.add_argument("--md", required=True, help="rows λ_SA, columns λ_MLP, as Markdown")
    sub.add_argument("--tex", required=True, help="the same as a LaTeX tabular (booktabs)")

    def rank_summary(name: str, description: str, handler, **inputs: str) -> None:
        """A rank table's parser: its input tables, the rank column, and the CSV and Markdown it writes."""
        sub = add_command(tables, name, description, handler)
        for table, help_text in inputs.items():
            sub.add_argument(f"--{table}", required=True, help=help_text)
        sub.add_argument("--rank-metric", required=True, help="the rank column summarised, e.g. rank_tol_0.01")
        sub.add_argument("--csv", required=True, help="one row per cell and metric (`wdrank.statistics.metric_summary`)")
        sub.add_argument("--md", required=True, help="the same as a Markdown table")

    rank_summary("lm_rank", "language models: mean QK/OV rank per (λ_SA, λ_MLP), each λ_SA against λ_SA = 0, "
                 "paired by seed", _lm_rank, spectra="lm_head_spectra.csv")
    rank_summary("fig3_vit_rank", "ViT: QK/OV rank and accuracy per λ, each λ against λ = 0, paired by seed",
                 _fig3_vit_rank, runs="vit_runs.csv", spectra="vit_head_spectra.csv")

    sub = add_command(tables, "fig4_audit_summary", "per model and product: median nuclear/Frobenius ratio, IQR, "
                      "balance and rank", _fig4_audit_summary)
    sub.add_argument("tables", nargs="+", help="audit_<model>.csv of each model")
    sub.add_argument("--csv", required=True)
    describe_group(parser, tables)
