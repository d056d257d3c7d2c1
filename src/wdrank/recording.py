"""When to record a run, and how to read an exponential decay rate off the records (Figs. 1 and 2)."""

from __future__ import annotations

import numpy as np


def recorded_steps(steps: int, points: int) -> np.ndarray:
    """Steps at which a run is recorded: log-spaced (resolves fast early decay) ∪ linear (even coverage), with 0."""
    log_spaced = np.geomspace(1, steps, points).round()
    linear = np.linspace(0, steps, points).round()
    return np.unique(np.concatenate([[0], log_spaced, linear])).astype(np.int64)


def fitted_decay_rate(steps: np.ndarray, values: np.ndarray, floor: float = 1e-9) -> float:
    """Per-step rate r of values ≈ c·e^{−r·step}, by least squares on the log over the points above `floor` times
    the first value (below that they are rounding noise)."""
    values = np.asarray(values, dtype=np.float64)
    keep = values > floor * values[0]
    if keep.sum() < 3:
        raise ValueError(f"only {keep.sum()} recorded steps lie above the noise floor; record more points early on")
    slope, _ = np.polyfit(np.asarray(steps)[keep], np.log(values[keep]), 1)
    return -slope
