"""Pipeline steps that combine per-run results into the tables figures are drawn from, and refresh the cache."""

from __future__ import annotations

import argparse

from wdrank.commands import add_command

COMMANDS = {
    "collect-runs": "one runs table (every summary's row) and one spectra table (every run's spectra)",
    "learning-curves": "one table of every run's metrics log by step: train loss, learning rate, evaluations",
    "concat-tables": "concatenate per-run parquet tables into one CSV",
    "write-cache": "gzip result tables into the committed cache (reproducible bytes)",
    "provenance": "one table of the provenance of every run behind the result tables; warns on mixed grids",
}


def _collect_runs(args: argparse.Namespace) -> None:
    from wdrank import provenance
    from wdrank.aggregate import collect_summaries, concat_run_tables, write_csv

    write_csv(collect_summaries(args.summaries), args.runs_out)
    write_csv(concat_run_tables(args.spectra), args.spectra_out)
    provenance.write_table(provenance.of_summaries(args.summaries), args.provenance_out, args.runs_out)


def _learning_curves(args: argparse.Namespace) -> None:
    from wdrank.aggregate import collect_learning_curves, write_csv

    write_csv(collect_learning_curves(args.summaries, args.metrics), args.out)


def _concat_tables(args: argparse.Namespace) -> None:
    from wdrank import provenance
    from wdrank.aggregate import concat_run_tables, write_csv

    write_csv(concat_run_tables(args.inputs), args.out)
    provenance.write_table(provenance.of_run_tables(args.inputs), args.provenance_out, args.out)


def _provenance(args: argparse.Namespace) -> None:
    from wdrank import provenance

    if len(args.tables) != len(args.names):
        raise ValueError(f"{len(args.tables)} provenance tables but {len(args.names)} --names: give one per table")
    tables = {name: provenance.read_table(path) for path, name in zip(args.tables, args.names, strict=True)}
    provenance.write_table(provenance.summary(tables), args.out, args.out)


def _write_cache(args: argparse.Namespace) -> None:
    import json

    from wdrank.aggregate import grid_mismatches, write_gzip_copy

    if len(args.tables) != len(args.out):
        raise ValueError(f"{len(args.tables)} tables but {len(args.out)} --out paths: give one per table")
    if args.config_changes:
        raise ValueError("the committed cache holds the default run (config.yaml as committed), but this run's "
                         f"config differs in {', '.join(args.config_changes)}: nothing written")
    mismatches = [line for table, axes in json.loads(args.grid).items() for line in grid_mismatches(table, axes)]
    if mismatches:
        raise ValueError("the result tables are not the configured grid (" + "; ".join(mismatches) + "): run the "
                         "workflow to the end first; nothing written")
    for table, target in zip(args.tables, args.out, strict=True):
        write_gzip_copy(table, target)


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "collect-runs", COMMANDS["collect-runs"], _collect_runs)
    parser.add_argument("--summaries", nargs="+", required=True, help="summary.json of every run")
    parser.add_argument("--spectra", nargs="+", required=True, help="spectra.parquet of every run")
    parser.add_argument("--runs-out", required=True, help="CSV, one row per run")
    parser.add_argument("--spectra-out", required=True, help="CSV, one row per run, step, layer, head, product")
    parser.add_argument("--provenance-out", required=True, help="CSV, one row per run: what produced it")

    parser = add_command(commands, "learning-curves", COMMANDS["learning-curves"], _learning_curves)
    parser.add_argument("--summaries", nargs="+", required=True, help="summary.json of every run")
    parser.add_argument("--metrics", nargs="+", required=True, help="metrics.jsonl of every run, in the same order")
    parser.add_argument("--out", required=True, help="CSV, one row per run and logged step")

    parser = add_command(commands, "concat-tables", COMMANDS["concat-tables"], _concat_tables)
    parser.add_argument("inputs", nargs="+", help="parquet tables of runs, with their settings and provenance")
    parser.add_argument("--out", required=True, help="CSV of all rows")
    parser.add_argument("--provenance-out", required=True, help="CSV, one row per run: what produced it")

    parser = add_command(commands, "provenance", COMMANDS["provenance"], _provenance)
    parser.add_argument("tables", nargs="+", help="provenance tables (CSV), one per result table")
    parser.add_argument("--names", nargs="+", required=True, help="the result table each one belongs to")
    parser.add_argument("--out", required=True, help="CSV, one row per run of every table")

    parser = add_command(commands, "write-cache", COMMANDS["write-cache"], _write_cache)
    parser.add_argument("tables", nargs="+", help="result tables (CSV)")
    parser.add_argument("--out", nargs="+", required=True, help="the gzipped copy of each table, in the same order")
    parser.add_argument("--grid", default="{}", help="JSON {runs table: {axis: configured values}}: refused unless "
                        "each table holds exactly that grid")
    parser.add_argument("--config-changes", nargs="*", default=[], metavar="KEY",
                        help="config keys that differ from the committed default: refused if any")
