"""What the workflow makes of the job states the SLURM plugin polls (wdrank.slurm), with `scontrol` answered by a
stand-in: the real cluster's side of it is tests/test_slurm.py."""

import os
import subprocess

import pytest

from wdrank import slurm


def fake_scontrol(monkeypatch, controller: dict[str, str], refuse: str | None = None,
                  comment: str = "rule_lm_train_wildcards_0.1_0.1_0") -> list[list[str]]:
    """Answer `scontrol show job` from `controller` ({job: state}; a job not in it is unknown; each job carries the
    `comment` the SLURM plugin gives it) and `scontrol requeue` with success, or with `refuse` as SLURM's error;
    returns the commands run."""
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        job = command[-1]
        if command[1] == "show":
            known = job in controller
            return subprocess.CompletedProcess(command, 0 if known else 1,
                                               f"JobId={job} JobName=x JobState={controller.get(job)} Reason=None "
                                               f"Comment={comment} Requeue=1"
                                               if known else "", "" if known else "Invalid job id specified")
        return subprocess.CompletedProcess(command, 1 if refuse else 0, "", refuse or "")

    monkeypatch.setattr(slurm.subprocess, "run", run)
    return calls


def test_a_job_preempted_and_cancelled_is_requeued(monkeypatch):
    calls = fake_scontrol(monkeypatch, {"7": "PREEMPTED"})
    warnings = []
    settled = slurm.settle_preemptions({"5": "RUNNING", "6": "COMPLETED", "7": "PREEMPTED"}, warnings.append,
                                       checkpointed_rules={"lm_train"})
    assert settled == {"5": "RUNNING", "6": "COMPLETED", "7": "PENDING"}
    assert ["scontrol", "requeue", "7"] in calls
    assert warnings == ["SLURM job 7 (lm_train) was preempted and cancelled (PreemptMode=CANCEL); requeued it: it "
                        "runs again and resumes from its last checkpoint"]


@pytest.mark.parametrize("comment, job, how", [
    ("rule_lm_data", "SLURM job 7 (lm_data)", "it runs again from the beginning (a lm_data job keeps no checkpoint)"),
    ("rule_run_spectra_wildcards_lm_0.1_0.1_0", "SLURM job 7 (run_spectra)",
     "it runs again from the beginning (a run_spectra job keeps no checkpoint)"),
    ("(null)", "SLURM job 7",
     "it runs again (a training job resumes from its last checkpoint, any other job starts over)"),
], ids=["data job", "job with wildcards", "job of no rule"])
def test_a_requeued_job_that_keeps_no_checkpoint_is_said_to_start_over(monkeypatch, comment, job, how):
    fake_scontrol(monkeypatch, {"7": "PREEMPTED"}, comment=comment)
    warnings = []
    slurm.settle_preemptions({"7": "PREEMPTED"}, warnings.append, checkpointed_rules={"lm_train"})
    assert warnings == [f"{job} was preempted and cancelled (PreemptMode=CANCEL); requeued it: {how}"]


def test_a_job_slurm_already_requeued_is_left_to_slurm(monkeypatch):
    calls = fake_scontrol(monkeypatch, {"7": "PENDING"})
    warnings = []
    assert slurm.settle_preemptions({"7": "PREEMPTED"}, warnings.append) == {"7": "PENDING"}
    assert not any(command[1] == "requeue" for command in calls) and warnings == []


def test_a_job_slurm_will_not_requeue_is_reported_failed_for_snakemake_to_resubmit(monkeypatch):
    fake_scontrol(monkeypatch, {"7": "PREEMPTED"},
                  refuse="scontrol: error: Requested operation is presently disabled for job 7")
    warnings = []
    assert slurm.settle_preemptions({"7": "PREEMPTED"}, warnings.append) == {"7": "FAILED"}
    assert "refuses to requeue it (scontrol: error: Requested operation is presently disabled for job 7)" in \
        warnings[0] and "Snakemake resubmits it" in warnings[0]


def test_a_job_the_controller_has_forgotten_is_reported_failed(monkeypatch):
    """sacct still says PREEMPTED long after the controller dropped the job (MinJobAge): it cannot be requeued."""
    calls = fake_scontrol(monkeypatch, {})
    warnings = []
    assert slurm.settle_preemptions({"7": "PREEMPTED"}, warnings.append) == {"7": "FAILED"}
    assert "the controller no longer knows the job" in warnings[0]
    assert not any(command[1] == "requeue" for command in calls)


FAKE_SLURM = {  # the SLURM commands the plugin and wdrank.slurm run, answering for one job, 4242, preempted for good
    "scontrol": """
        case "$1 $2" in
          "show config") printf 'MinJobAge               = 600 sec\\nMaxArraySize            = 1001\\n' ;;
          "show job") echo "JobId=4242 JobName=run JobState=PREEMPTED Comment=rule_lm_train_wildcards_0.1_0.1_0" ;;
          "requeue 4242") echo "$*" >> "$CALLS" ;;
          *) exit 1 ;;
        esac""",
    "squeue": 'echo "4242|PREEMPTED"',
    "sacct": 'echo "4242|PREEMPTED"',
}


def test_the_plugins_own_status_check_goes_through_the_preemption_fix(tmp_path, monkeypatch):
    """The SLURM plugin's executor, polling a job preempted and cancelled (SLURM's commands stood in for by scripts),
    reaches settle_preemptions once the workflow's fix is in place: the job is requeued and the warning given. A
    plugin release that stops polling through `query_job_status` fails here instead of hanging a cluster."""
    import asyncio
    import contextlib
    import logging
    from types import SimpleNamespace

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_SLURM.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    calls = tmp_path / "calls"
    calls.write_text("")
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    import snakemake_executor_plugin_slurm as plugin  # after PATH: its import asks `scontrol show config`
    monkeypatch.setattr(plugin, "query_job_status", plugin.query_job_status)  # put back after the test
    slurm.poll_through_settle_preemptions({"lm_train"})

    warnings = []
    logger = logging.getLogger("test_slurm_states")
    monkeypatch.setattr(logger, "warning", warnings.append)
    executor = plugin.Executor.__new__(plugin.Executor)  # as RemoteExecutor.__init__ would, without its threads
    executor.workflow = SimpleNamespace(executor_settings=plugin.ExecutorSettings(init_seconds_before_status_checks=1),
                                        workdir_init=str(tmp_path))
    executor.logger, executor.status_rate_limiter = logger, contextlib.nullcontext()
    executor.next_seconds_between_status_checks = 1
    executor.__post_init__()
    job = SimpleNamespace(external_jobid="4242", aux={})

    async def check():
        return [j async for j in executor.check_active_jobs([job])]

    still_active = asyncio.run(check())
    assert still_active == [job]  # requeued: the plugin keeps waiting for it
    assert calls.read_text() == "requeue 4242\n"
    assert "SLURM job 4242 (lm_train) was preempted and cancelled (PreemptMode=CANCEL); requeued it: it runs again " \
           "and resumes from its last checkpoint" in warnings
