"""Bringing back a SLURM job that was preempted and cancelled, so that a workflow never waits for it forever.

snakemake-executor-plugin-slurm takes a job in state PREEMPTED for one that SLURM restarts itself. That holds where
the partition's PreemptMode is REQUEUE: SLURM puts the job back in the queue at once (the controller shows it
PENDING, never PREEMPTED), and it runs again. Where PreemptMode is CANCEL, a preempted job is over and never comes
back, and the plugin would wait for it without end. `settle_preemptions` goes through the states the plugin polled:
a job whose controller state is still PREEMPTED is requeued (`scontrol requeue`: the same job id runs again, and a
training job resumes from its last checkpoint), so that preemption costs no Snakemake attempt; where SLURM refuses
(the job was submitted with --no-requeue, the cluster disables requeueing, or the controller has forgotten the
job), it is reported FAILED instead, so that Snakemake resubmits it (`restart-times`).

`poll_through_settle_preemptions` routes the plugin's status polls through it (workflow/rules/cluster.smk calls it
when the workflow runs on SLURM). That leans on one name inside the plugin, `query_job_status`, which its executor
looks up at each poll: pyproject.toml pins the plugin below its next major version, and tests/test_slurm_states.py
drives the executor's own status check to see that it still goes through here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Collection

PREEMPTED = "PREEMPTED"
FAILED = "FAILED"  # a state the plugin reports as a failed job (Snakemake then resubmits it)
REQUEUED = "PENDING"  # what the controller shows for a requeued job (the plugin keeps waiting for it)
# The plugin comments each job with its rule: rule_<name>, or rule_<name>_wildcards_<values>
_RULE_COMMENT = re.compile(r"\bComment=rule_(\w+?)(?:_wildcards_\S*)?(?=\s|$)")


def controller_view(job_id: str) -> tuple[str | None, str | None]:
    """(state, rule) of the job as slurmctld holds it now (`scontrol show job`): its state, or None once the
    controller has forgotten the job (MinJobAge after its end); the Snakemake rule it runs, or None if unknown."""
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True)
    if shown.returncode != 0:
        return None, None
    state, rule = re.search(r"\bJobState=(\S+)", shown.stdout), _RULE_COMMENT.search(shown.stdout)
    return state.group(1) if state else None, rule.group(1) if rule else None


def requeue(job_id: str) -> str | None:
    """Put a finished batch job back in the queue; None on success, else SLURM's reason (one line)."""
    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    return next(iter((done.stderr or done.stdout).strip().splitlines()), f"scontrol exited {done.returncode}")


def what_comes_back(rule: str | None, checkpointed_rules: Collection[str]) -> str:
    """How a requeued job of `rule` starts again: from its checkpoint (training) or from the beginning."""
    if rule in checkpointed_rules:
        return "it runs again and resumes from its last checkpoint"
    if rule is not None:
        return f"it runs again from the beginning (a {rule} job keeps no checkpoint)"
    return "it runs again (a training job resumes from its last checkpoint, any other job starts over)"


def settle_preemptions(states: dict[str, str], warn: Callable[[str], None],
                       checkpointed_rules: Collection[str] = ()) -> dict[str, str]:
    """`states` (SLURM job id -> state, as the plugin polled them) with every job that was preempted for good either
    requeued (state PENDING) or, where SLURM refuses, FAILED; `warn` says which, once per job, and how the job comes
    back (a job of `checkpointed_rules` resumes from its checkpoint, any other starts over)."""
    settled = dict(states)
    for job_id, state in states.items():
        if state != PREEMPTED:
            continue
        now, rule = controller_view(job_id)
        if now not in (None, PREEMPTED):  # already back in the queue (PreemptMode=REQUEUE) or running again
            settled[job_id] = now
            continue
        refusal = requeue(job_id) if now == PREEMPTED else "the controller no longer knows the job"
        job = f"SLURM job {job_id}" + (f" ({rule})" if rule else "")
        if refusal is None:
            warn(f"{job} was preempted and cancelled (PreemptMode=CANCEL); requeued it: "
                 f"{what_comes_back(rule, checkpointed_rules)}")
            settled[job_id] = REQUEUED
        else:
            warn(f"{job} was preempted and cancelled, and SLURM refuses to requeue it ({refusal}); "
                 "reporting it as failed, so that Snakemake resubmits it (restart-times)")
            settled[job_id] = FAILED
    return settled


def poll_through_settle_preemptions(checkpointed_rules: Collection[str]) -> None:
    """Make every status poll of snakemake-executor-plugin-slurm go through `settle_preemptions` (its executor calls
    the module's `query_job_status` at each poll); calling it again changes nothing.

    Raises:
        RuntimeError: when the installed plugin has no `query_job_status` (a version this fix does not know).
    """
    import snakemake_executor_plugin_slurm as plugin

    poll = getattr(plugin, "query_job_status", None)
    if poll is None:
        raise RuntimeError("this snakemake-executor-plugin-slurm has no query_job_status: preempted jobs need the "
                           'version that pyproject.toml names (pip install -e ".[slurm]")')
    if getattr(poll, "settles_preemptions", False):
        return

    async def poll_and_settle(command, logger):
        states, seconds = await poll(command, logger)
        if states:
            states = settle_preemptions(states, logger.warning, checkpointed_rules)
        return states, seconds

    poll_and_settle.settles_preemptions = True
    plugin.query_job_status = poll_and_settle
