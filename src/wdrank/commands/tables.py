"""`wdrank table NAME`: build one paper table from result tables (CSV, or the committed .csv.gz cache)."""

from __future__ import annotations

import argparse

from wdrank.commands import add_command, add_group, describe_group

COMMANDS = {"table": "build a paper table (Table 1, the ViT rank table, the audit summary) from result tables"}


def _table1_lm_perplexity(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.tables import write_perplexity_tables

    write_perplexity_tables(pd.read_csv(args.runs), args.csv, args.md, args.tex)


def _fig3_vit_rank(args: argparse.Namespace) -> None:
    import pandas as pd

    from wdrank.aggregate import write_csv
    from wdrank.tables import rank_accuracy_table

    write_csv(rank_accuracy_table(pd.read_csv(args.spectra), pd.read_csv(args.runs), args.rank_metric), args.csv)


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
    sub.add_argument("--csv", required=True, help="the grid, one row per cell (mean, std, seeds, best)")
    sub.add_argument("--md", required=True, help="rows λ_SA, columns λ_MLP, as Markdown")
    sub.add_argument("--tex", required=True, help="the same as a LaTeX tabular (booktabs)")

    sub = add_command(tables, "fig3_vit_rank", "ViT: mean and std over seeds of QK/OV rank and accuracy per λ",
                      _fig3_vit_rank)
    sub.add_argument("--runs", required=True, help="vit_runs.csv")
    sub.add_argument("--spectra", required=True, help="vit_head_spectra.csv")
    sub.add_argument("--rank-metric", required=True, help="the rank column summarised, e.g. rank_tol_0.01")
    sub.add_argument("--csv", required=True)

    sub = add_command(tables, "fig4_audit_summary", "per model and product: median nuclear/Frobenius ratio, IQR, "
                      "balance and rank", _fig4_audit_summary)
    sub.add_argument("tables", nargs="+", help="audit_<model>.csv of each model")
    sub.add_argument("--csv", required=True)
    describe_group(parser, tables)
