"""Combine per-run result files into one table (the unit the figures and the committed cache read)."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wdrank.io import atomic_path
from wdrank.summary import read_summary

RUN_METADATA_KEY = b"wdrank.run"
PROVENANCE_METADATA_KEY = b"wdrank.provenance"


def write_run_table(table: pd.DataFrame, path: str | Path, run_settings: dict[str, Any],
                    provenance: dict | None = None) -> None:
    """Write one run's table as parquet, with the run's resolved settings (and, for a run of its own, its
    provenance: `wdrank.provenance`) embedded as JSON metadata."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = {**(arrow.schema.metadata or {}), RUN_METADATA_KEY: json.dumps(run_settings).encode()}
    if provenance is not None:
        metadata[PROVENANCE_METADATA_KEY] = json.dumps(provenance).encode()
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(metadata), tmp)


def read_run_settings(path: str | Path) -> dict[str, Any]:
    """The settings a run table was produced with (see `write_run_table`)."""
    return json.loads(pq.read_schema(path).metadata[RUN_METADATA_KEY])


def read_run_provenance(path: str | Path) -> dict:
    """The provenance recorded with a run table, with an error naming the file where there is none."""
    metadata = pq.read_schema(path).metadata or {}
    if PROVENANCE_METADATA_KEY not in metadata:
        raise ValueError(f"{path}: this run table records no provenance; rerun the step that wrote it")
    return json.loads(metadata[PROVENANCE_METADATA_KEY])


def concat_run_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate run tables in the given order; fails naming the file that cannot be read."""
    if not paths:
        raise ValueError("no run tables given")
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_parquet(path))
        except Exception as error:  # pyarrow raises several types for truncated or foreign files
            raise ValueError(f"cannot read run table {path}: {error}") from error
    return pd.concat(frames, ignore_index=True)


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically; 10 significant digits (full precision stays in the per-run parquet files)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")


def collect_summaries(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run: the `row` of each summary.json (layout: `wdrank.summary`). The session's machine and speed stay
    out, so that the table is identical across machines and reruns."""
    return pd.DataFrame([read_summary(path)["row"] for path in paths])


def led_by_sweep(table: pd.DataFrame, sweep: dict) -> pd.DataFrame:
    """`table` with the run's sweep point (axis -> value, e.g. wd_attn, seed) as its leading columns, in place."""
    for position, (axis, value) in enumerate(sweep.items()):
        table.insert(position, axis, value)
    return table


def read_metrics_log(path: str | Path) -> pd.DataFrame:
    """A run's metrics.jsonl as one row per logged step: the training record (train_loss, lr, grad_norm) and the
    evaluation at that step (validation_loss, test_loss or eval_loss, ...) side by side, empty where not logged."""
    try:
        records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the metrics log of a run: {error}") from error
    if not records or not all(isinstance(record, dict) and "step" in record for record in records):
        raise ValueError(f"{path}: not the metrics log of a finished run (JSON lines, each with a step)")
    return pd.DataFrame(records).groupby("step", as_index=False, sort=True).first()


def collect_learning_curves(summaries: Sequence[str | Path], metrics: Sequence[str | Path]) -> pd.DataFrame:
    """One row per (run, logged step), led by the run's sweep point (from its summary.json, given in the same
    order as its metrics.jsonl): the table the learning-curve figures are drawn from."""
    if len(summaries) != len(metrics):
        raise ValueError(f"{len(summaries)} summaries but {len(metrics)} metrics logs: give one of each per run")
    frames = []
    for summary_path, metrics_path in zip(summaries, metrics, strict=True):
        if Path(summary_path).parent != Path(metrics_path).parent:
            raise ValueError(f"{metrics_path} is not the metrics log of the run {summary_path} belongs to")
        frames.append(led_by_sweep(read_metrics_log(metrics_path), read_summary(summary_path)["run"]["sweep"]))
    return pd.concat(frames, ignore_index=True)


def write_gzip_copy(source: str | Path, target: str | Path) -> None:
    """gzip `source` to `target` atomically, without a timestamp or file name in the header, so that the same
    table always gives the same bytes (the committed cache changes only when results do)."""
    with open(source, "rb") as raw, atomic_path(target) as tmp:
        with open(tmp, "wb") as handle, gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as packed:
            shutil.copyfileobj(raw, packed)


def grid_mismatches(table_path: str | Path, axes: dict[str, list]) -> list[str]:
    """How a runs table's sweep differs from the configured axes (axis -> values): one line per axis, none if equal."""
    table = pd.read_csv(table_path)
    lines = []
    for axis, values in axes.items():
        held = sorted(table[axis].unique().tolist()) if axis in table.columns else []
        if held != sorted(values):
            lines.append(f"{table_path} holds {axis} {held}, the config asks for {sorted(values)}")
    return lines


def tables_differing_from_cache(pairs: Sequence[tuple[str | Path, str | Path]]) -> list[str]:
    """The result tables that exist and differ from their cached copy ((cache .csv.gz, table .csv) pairs): results
    that a restore from the cache would replace."""
    return [str(table) for cached, table in pairs
            if Path(table).exists() and Path(cached).exists()
            and gzip.decompress(Path(cached).read_bytes()) != Path(table).read_bytes()]
