"""An audit along training: the per-head tables of several checkpoints of one model (hub revisions such as Pythia's
`step1000`, or a folder of checkpoint folders), each placed at its training step, and their per-layer summary.

The paper's theory (Thm. 1) predicts that under weight decay the gap between the Frobenius side and the nuclear norm
closes early in training (the balance discrepancy decays like e^{-2λt}); the trajectory shows it on a real model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

# "step_000400" (wdrank), "checkpoint-1000" (transformers' Trainer), "step143000" (Pythia), "step1000-tokens4B" (OLMo)
STEP = re.compile(r"(?:step|checkpoint)[-_]?(\d+)", re.IGNORECASE)


def checkpoint_step(label: str | Path) -> int | None:
    """The training step a checkpoint's folder (wdrank's own step_000400 too) or revision name states, if any."""
    label = str(label)
    match = STEP.search(Path(label).name if "@" not in label else label.rsplit("@", 1)[1])
    return int(match[1]) if match else None


def checkpoint_folders(folder: str | Path) -> list[Path]:
    """The model folders (those with a config.json) inside `folder`, in training order (by the step their names
    state, else by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of checkpoints at {folder}")
    found = [child for child in folder.iterdir() if (child / "config.json").is_file()]
    if not found:
        raise ValueError(f"{folder}: holds no checkpoint folders (subfolders with a config.json)")
    return sorted(found, key=lambda child: (checkpoint_step(child.name) is None, checkpoint_step(child.name) or 0,
                                            child.name))


def stated_steps(labels: list[str]) -> list[int] | None:
    """The steps that checkpoints' names state, if every name states one and no two the same; else None (the
    checkpoints are then numbered in the order given)."""
    steps = [checkpoint_step(label) for label in labels]
    return steps if None not in steps and len(set(steps)) == len(steps) else None


def with_steps(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One table of several checkpoints' per-head tables (each with a `checkpoint` column), with a `step` column:
    `stated_steps`, or each checkpoint's position in the order given; in step order."""
    steps = stated_steps([table["checkpoint"].iloc[0] for table in tables]) or list(range(len(tables)))
    combined = [table.assign(step=step) for table, step in zip(tables, steps, strict=True)]
    table = pd.concat(combined, ignore_index=True).sort_values("step", kind="stable", ignore_index=True)
    return table[["model", "checkpoint", "step", *[c for c in table.columns if c not in ("model", "checkpoint",
                                                                                          "step")]]]


def trajectory_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per step, layer and product: the median nuclear/Frobenius ratio and relative balance over heads, and the mean
    effective rank as a fraction of the head dimension (what the trajectory figure draws)."""
    fractions = table.assign(effective_rank_fraction=table["effective_rank"] / table["head_dim"])
    return (fractions.groupby(["step", "checkpoint", "layer", "product"], as_index=False, sort=True)
            .agg(median_nuclear_to_frobenius=("nuclear_to_frobenius", "median"),
                 median_balance_relative=("balance_relative", "median"),
                 mean_effective_rank_fraction=("effective_rank_fraction", "mean")))
