"""A finished training run on disk: its summary.json, and the per-head spectra of its checkpoints.

Every trained experiment writes the same summary.json (`wdrank.experiments.training.run_training`):

    row      the run's line in its experiment's runs table: weight decays, seed and scores, identical on any machine
    run      experiment, sweep point, settings, resolved model shape, parameter groups (role -> weight decay, tensor
             and parameter counts, names), checkpoints (step, folder)
    session  this session's wall time, threads, device and speed (units/s, MFU): never part of a table
    provenance  wdrank version and commit, library versions, machine, sha256 of the data (`wdrank.provenance`):
             gathered into the experiment's provenance table, never part of a result table

Spectra are a step of their own, so that changing the rank thresholds never retrains anything, and a GPU job never
spends its time on them. Each checkpoint folder is read like any model folder (`wdrank.audit`). Torch-free: the
step starts in about a second.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wdrank.aggregate import led_by_sweep, read_summary
from wdrank.audit import audit_model


def run_spectra(summary_path: str | Path, rank_thresholds: tuple[float, ...]) -> pd.DataFrame:
    """One row per (checkpoint step, layer, head, product), led by the run's sweep point (e.g. wd_attn, seed)."""
    run = read_summary(summary_path)["run"]
    frames = []
    for checkpoint in run["checkpoints"]:
        table = audit_model(checkpoint["path"], rank_thresholds)
        table.insert(0, "step", checkpoint["step"])
        frames.append(table)
    return led_by_sweep(pd.concat(frames, ignore_index=True), run["sweep"])
