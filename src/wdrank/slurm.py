"""Bringing back a SLURM job that was preempted and cancelled, so that a workflow never waits for it forever.

snakemake-executor-plugin-slurm takes a job in state PREEMPTED for one that SLURM restarts itself. That holds where
the partition's PreemptMode is REQUEUE: SLURM puts the job back in the queue at once (the controller shows it
PENDING, never PREEMPTED), and it runs again. Where PreemptMode is CANCEL, a preempted job is over and never comes
back, and the plugin would wait for it without end. `settle_preemptions` goes through the states the plugin polled:
a job whose controller state is still PREEMPTED is requeued (`scontrol requeue`: the same job id runs again, and a
training job resumes from its last checkpoint), so that preemption costs no Snakemake attempt; where SLURM refuses
(the job was submitted with --no-requeue, the cluster disables requeueing, or the controller has forgotten the
job), it is reported FAILED instead, so that Snakemake resubmits it (`restart-times`).

Free of Snakemake: the workflow (workflow/rules/cluster.smk) hands the plugin's polled states to this module.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

PREEMPTED = "PREEMPTED"
FAILED = "FAILED"  # a state the plugin reports as a failed job (Snakemake then resubmits it)
REQUEUED = "PENDING"  # what the controller shows for a requeued job (the plugin keeps waiting for it)


def controller_state(job_id: str) -> str | None:
    """The job's state as slurmctld holds it now (`scontrol show job`), or None once it has forgotten the job
    (MinJobAge after its end)."""
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True)
    state = re.search(r"\bJobState=(\S+)", shown.stdout)
    return state.group(1) if shown.returncode == 0 and state else None


def requeue(job_id: str) -> str | None:
    """Put a finished batch job back in the queue; None on success, else SLURM's reason (one line)."""
    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    return next(iter((done.stderr or done.stdout).strip().splitlines()), f"scontrol exited {done.returncode}")


def settle_preemptions(states: dict[str, str], warn: Callable[[str], None]) -> dict[str, str]:
    """`states` (SLURM job id -> state, as the plugin polled them) with every job that was preempted for good either
    requeued (state PENDING) or, where SLURM refuses, FAILED; `warn` says which, once per job."""
    settled = dict(states)
    for job_id, state in states.items():
        if state != PREEMPTED:
            continue
        now = controller_state(job_id)
        if now not in (None, PREEMPTED):  # already back in the queue (PreemptMode=REQUEUE) or running again
            settled[job_id] = now
            continue
        refusal = requeue(job_id) if now == PREEMPTED else "the controller no longer knows the job"
        if refusal is None:
            warn(f"SLURM job {job_id} was preempted and cancelled (PreemptMode=CANCEL); requeued it: it runs again "
                 "and resumes from its last checkpoint")
            settled[job_id] = REQUEUED
        else:
            warn(f"SLURM job {job_id} was preempted and cancelled, and SLURM refuses to requeue it ({refusal}); "
                 "reporting it as failed, so that Snakemake resubmits it (restart-times)")
            settled[job_id] = FAILED
    return settled
