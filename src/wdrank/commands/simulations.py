"""Pipeline steps of the experiments without a network: Fig. 1's factor matrices and the two-scalar appendix."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from wdrank.commands import add_command, rank_thresholds_argument

COMMANDS = {
    "factorized-run": "Fig. 1: one gradient-descent run on two factor matrices",
    "scalar-pair": "appendix: two scalars, plain vs factorised, AdamW vs Adam + L2, every λ",
}


def _factorized_run(args: argparse.Namespace) -> None:
    from wdrank import provenance
    from wdrank.aggregate import write_run_table
    from wdrank.experiments.factorized import FactorizedRun, simulate

    run = FactorizedRun(targets=tuple(args.targets), lam=args.lam, seed=args.seed, lr=args.lr, steps=args.steps,
                        record_points=args.record_points, init_std=args.init_std)
    table = simulate(run, rank_thresholds=tuple(args.rank_thresholds), progress=True)
    write_run_table(table, args.out, {"experiment": "factorized", **asdict(run)}, provenance.record())


def _scalar_pair(args: argparse.Namespace) -> None:
    from wdrank import provenance
    from wdrank.aggregate import write_csv
    from wdrank.experiments.scalar_pair import all_runs

    write_csv(all_runs(args.lambdas, tuple(args.target), tuple(args.start), args.lr, args.steps), args.table)
    record = provenance.provenance_table([{"experiment": "scalar_pair"}], [provenance.record()])
    provenance.write_table(record, args.provenance_out, args.table)


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "factorized-run", COMMANDS["factorized-run"], _factorized_run)
    parser.add_argument("--lam", type=float, required=True, help="λ in |ABᵀ − D|² + λ/2(|A|² + |B|²)")
    parser.add_argument("--seed", type=int, required=True, help="of the initial factors")
    parser.add_argument("--targets", type=float, nargs="+", required=True, help="diagonal of D")
    rank_thresholds_argument(parser)
    parser.add_argument("--lr", type=float, required=True, help="step size η")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--record-points", type=int, required=True, help="log- and as many linearly spaced records")
    parser.add_argument("--init-std", type=float, required=True, help="std of the i.i.d. Gaussian initial entries")
    parser.add_argument("--out", required=True, help="parquet file of the run's long table")

    parser = add_command(commands, "scalar-pair", COMMANDS["scalar-pair"], _scalar_pair)
    parser.add_argument("--lambdas", type=float, nargs="+", required=True)
    parser.add_argument("--target", type=float, nargs=2, required=True, help="w*")
    parser.add_argument("--start", type=float, nargs=2, required=True, help="w at step 0")
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--table", required=True, help="CSV of every trajectory")
    parser.add_argument("--provenance-out", required=True, help="CSV: what produced the table")
