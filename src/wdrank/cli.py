"""Command line of the package: `python -m wdrank <command>` (what the Snakemake rules call).

Every command takes explicit arguments, so a run is reproducible from its shell line alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict



def _factorized_run(args: argparse.Namespace) -> None:
    from wdrank.aggregate import write_run_table
    from wdrank.experiments.factorized import FactorizedRun, simulate

    run = FactorizedRun(
        targets=tuple(args.targets),
        lam=args.lam,
        seed=args.seed,
        lr=args.lr,
        steps=args.steps,
        record_points=args.record_points,
        init_std=args.init_std,
    )
    table = simulate(run, rank_thresholds=tuple(args.rank_thresholds), progress=True)
    write_run_table(table, args.out, {"experiment": "factorized", **asdict(run)})


def _concat_tables(args: argparse.Namespace) -> None:
    from wdrank.aggregate import concat_run_tables, write_csv

    write_csv(concat_run_tables(args.inputs), args.out)


def _factorized_figure(args: argparse.Namespace) -> None:
    from wdrank.plots.factorized import plot_factorized
    from wdrank.plots.style import save_figure

    import pandas as pd

    save_figure(plot_factorized(pd.read_csv(args.table), args.trajectory_lambda), args.pdf, args.png)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wdrank", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("factorized-run", help="Fig. 1: one gradient-descent run on two factor matrices")
    run.add_argument("--lam", type=float, required=True, help="λ in |ABᵀ − D|² + λ/2(|A|² + |B|²)")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--targets", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8, 1.0], help="diagonal of D")
    run.add_argument("--rank-thresholds", type=float, nargs="*", default=[1e-2, 1e-3])
    run.add_argument("--lr", type=float, default=0.05)
    run.add_argument("--steps", type=int, default=20000)
    run.add_argument("--record-points", type=int, default=100)
    run.add_argument("--init-std", type=float, default=0.5)
    run.add_argument("--out", required=True, help="parquet file of the run's long table")
    run.set_defaults(handler=_factorized_run)

    concat = commands.add_parser("concat-tables", help="concatenate per-run parquet tables into one CSV")
    concat.add_argument("inputs", nargs="+")
    concat.add_argument("--out", required=True)
    concat.set_defaults(handler=_concat_tables)

    figure = commands.add_parser("factorized-figure", help="Fig. 1 (four panels) from the aggregated table")
    figure.add_argument("table")
    figure.add_argument("--trajectory-lambda", type=float, default=0.4)
    figure.add_argument("--pdf", required=True)
    figure.add_argument("--png", required=True)
    figure.set_defaults(handler=_factorized_figure)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FloatingPointError, FileNotFoundError) as error:
        print(f"wdrank {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0
