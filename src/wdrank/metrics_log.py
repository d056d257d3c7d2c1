"""A run's metrics log (JSON lines: train loss, learning rate, gradient norm, evaluations) that survives every kill.

The log grows beside the run's checkpoints, not at the path a workflow declares: Snakemake deletes a job's outputs
before it reruns the job, so a log kept there would lose everything before the last checkpoint at each restart. Each
record is one line appended by one `write` to a file opened with O_APPEND, so a kill leaves at most a last line cut
short; a resumed run cuts the log back to the step of the checkpoint it resumed from (an atomic rewrite), so the
steps it repeats are logged once. When the run ends, the log is copied atomically to the declared path.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from wdrank.io import atomic_path

FILE_NAME = "metrics.jsonl"  # the live log's name inside the checkpoint folder


class MetricsLog:
    """Append-only record of one run, kept in `folder` (its checkpoint folder)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / FILE_NAME
        self._descriptor: int | None = None

    def resume_from(self, step: int) -> None:
        """Keep the complete records of steps up to `step` (the checkpoint resumed from; 0: none) and drop the rest:
        the run repeats them. Atomic: a kill during the rewrite leaves the old log, never a shorter one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [line for line in self.records_text() if json.loads(line)["step"] <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(kept), encoding="utf-8")

    def records_text(self) -> list[str]:
        """The complete lines of the log (a last line without its newline was cut short by a kill: left out)."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        return [line for line in lines if line.endswith("\n")]

    def records(self) -> list[dict]:
        """The complete records of the log, in order."""
        return [json.loads(line) for line in self.records_text()]

    def __enter__(self) -> MetricsLog:
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self._descriptor)
        self._descriptor = None

    def append(self, record: dict) -> None:
        """Write one record as one line, in one system call."""
        os.write(self._descriptor, (json.dumps(record) + "\n").encode("utf-8"))

    def publish(self, destination: str | Path) -> None:
        """Copy the whole log to `destination` atomically (the workflow's output of the finished run)."""
        with atomic_path(destination) as tmp:
            shutil.copyfile(self.path, tmp)
