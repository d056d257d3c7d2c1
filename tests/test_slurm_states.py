"""What the workflow makes of the job states the SLURM plugin polls (wdrank.slurm), with `scontrol` answered by a
stand-in: the real cluster's side of it is tests/test_slurm.py."""

import subprocess

from wdrank import slurm


def fake_scontrol(monkeypatch, controller: dict[str, str], refuse: str | None = None) -> list[list[str]]:
    """Answer `scontrol show job` from `controller` ({job: state}; a job not in it is unknown) and `scontrol requeue`
    with success, or with `refuse` as SLURM's error; returns the commands run."""
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        job = command[-1]
        if command[1] == "show":
            known = job in controller
            return subprocess.CompletedProcess(command, 0 if known else 1,
                                               f"JobId={job} JobName=x JobState={controller.get(job)} Reason=None"
                                               if known else "", "" if known else "Invalid job id specified")
        return subprocess.CompletedProcess(command, 1 if refuse else 0, "", refuse or "")

    monkeypatch.setattr(slurm.subprocess, "run", run)
    return calls


def test_a_job_preempted_and_cancelled_is_requeued(monkeypatch):
    calls = fake_scontrol(monkeypatch, {"7": "PREEMPTED"})
    warnings = []
    settled = slurm.settle_preemptions({"5": "RUNNING", "6": "COMPLETED", "7": "PREEMPTED"}, warnings.append)
    assert settled == {"5": "RUNNING", "6": "COMPLETED", "7": "PENDING"}
    assert ["scontrol", "requeue", "7"] in calls
    assert warnings == ["SLURM job 7 was preempted and cancelled (PreemptMode=CANCEL); requeued it: it runs again "
                        "and resumes from its last checkpoint"]


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
