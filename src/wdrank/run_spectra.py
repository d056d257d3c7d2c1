"""The per-head spectra of a finished training run's checkpoints (its record: `wdrank.summary`).

Spectra are a step of their own, so that changing the rank thresholds never retrains anything, and a GPU job never
spends its time on them. Each checkpoint folder is read like any model folder (`wdrank.audit`). Torch-free: the
step starts in about a second.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wdrank.aggregate import led_by_sweep
from wdrank.audit import audit_model
from wdrank.summary import read_summary


def run_spectra(summary_path: str | Path, rank_thresholds: tuple[float, ...]) -> pd.DataFrame:
    """One row per (checkpoint step, layer, head, product), led by the run's sweep point (e.g. wd_attn, seed)."""
    run = read_summary(summary_path)["run"]
    frames = []
    for checkpoint in run["checkpoints"]:
        table = audit_model(checkpoint["path"], rank_thresholds)
        table.insert(0, "step", checkpoint["step"])
        frames.append(table)
    return led_by_sweep(pd.concat(frames, ignore_index=True), run["sweep"])
