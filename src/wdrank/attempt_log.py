"""Every attempt of a job keeps its output: each rule appends to its log (`>> {log}`) under a header line written
first by `python -m wdrank.attempt_log LOG`, which names the attempt, its time, its host and, on SLURM, its job id.

Snakemake deletes a job's log before it runs the job again, so the attempts live in a hidden file beside the log
(`.<log name>.attempts`) of which the log is a hard link: Snakemake's deletion removes the name, not the text, and
the next attempt links the name back before it appends. So after a kill and rerun, a preemption or a time limit,
the first attempt's error or warning is still there above the attempt that resumed (a training job then says from
which checkpoint). Where the file system refuses hard links (rare on Linux), each attempt's log starts afresh, as
Snakemake leaves it. Standard library only: it runs before every job.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

MARKER = "=== attempt "


def attempts_in(log: Path) -> int:
    """How many attempts `log` holds (its header lines); 0 for a log not yet written."""
    if not log.exists():
        return 0
    with open(log, encoding="utf-8", errors="replace") as handle:
        return sum(line.startswith(MARKER) for line in handle)


def header(attempt: int, now: datetime, host: str, environ: Mapping[str, str]) -> str:
    """The header line of `attempt`, e.g. '=== attempt 2 · 2026-12-07 23:41:02 UTC · host n01 · SLURM job 812 ==='."""
    parts = [f"attempt {attempt}", now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), f"host {host}"]
    if job := environ.get("SLURM_JOB_ID"):  # a requeued job keeps its id: the same id on two attempts
        parts.append(f"SLURM job {job}")
    return f"=== {' · '.join(parts)} ==="


def attempts_file(log: Path) -> Path:
    """The hidden file beside `log` that holds every attempt (the log is a hard link to it)."""
    return log.with_name(f".{log.name}.attempts")


def _relink(log: Path, attempts: Path) -> None:
    """Make `log` name the attempts file again (after Snakemake deleted it), folding in a log written without it."""
    attempts.touch(exist_ok=True)
    if log.exists() and not log.samefile(attempts):  # written without its attempts file (an older wdrank, a copy)
        with open(attempts, "ab") as handle:
            handle.write(log.read_bytes())
        log.unlink()
    if not log.exists():
        with contextlib.suppress(OSError):  # no hard links on this file system: the log starts afresh
            os.link(attempts, log)


def start_attempt(log: str | Path, environ: Mapping[str, str] = os.environ) -> str:
    """Bring back `log` with every earlier attempt and append the next attempt's header, on a line of its own;
    returns the header."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    _relink(log, attempts_file(log))
    line = header(attempts_in(log) + 1, datetime.now(timezone.utc), socket.gethostname(), environ)
    with open(log, "a+b") as handle:
        ends_mid_line = handle.tell() > 0 and os.pread(handle.fileno(), 1, handle.tell() - 1) != b"\n"
        # a killed attempt may stop mid-line (a progress bar): the header still starts a line
        handle.write((("\n" if ends_mid_line else "") + line + "\n").encode())
    return line


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m wdrank.attempt_log LOG")
    start_attempt(sys.argv[1])
