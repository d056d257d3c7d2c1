"""A finished training run's record, summary.json: its one home (written at the end of a run, read and validated by
every step after it).

Every trained experiment writes the same record (`wdrank.experiments.training.run_training`):

    row      the run's line in its experiment's runs table: weight decays, seed and scores, identical on any machine
    run      experiment, sweep point, settings, resolved model shape, parameter groups (role -> weight decay, tensor
             and parameter counts, names), checkpoints (step, folder)
    session  this session's wall time, threads, device and speed (units/s, MFU): never part of a table
    provenance  wdrank version and commit, library versions, machine, sha256 of the data (`wdrank.provenance`):
             gathered into the experiment's provenance table, never part of a result table
"""

from __future__ import annotations

import json
from pathlib import Path

from wdrank.io import atomic_path

SECTIONS = ("row", "run", "session", "provenance")


def write_summary(summary: dict, path: str | Path) -> None:
    """Write a run's record atomically: summary.json appears only once the run has finished."""
    missing = [section for section in SECTIONS if section not in summary]
    if missing:
        raise ValueError(f"a run summary needs {', '.join(SECTIONS)}; missing {', '.join(missing)}")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))


def read_summary(path: str | Path) -> dict:
    """The summary.json of a finished run, with an error naming the file if it is not one."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the summary of a run: {error}") from error
    if not isinstance(summary, dict) or not set(SECTIONS) <= set(summary):
        raise ValueError(f"{path}: not the summary.json of a finished run of this wdrank (it needs row, run, session "
                         "and provenance)")
    return summary
