"""Each attempt of a job appends to its log under a header line (wdrank.attempt_log), so that a rerun keeps what
earlier attempts wrote; through Snakemake with a kill and a rerun: tests/test_workflow.py."""

from datetime import datetime, timezone

from wdrank.attempt_log import attempts_in, header, start_attempt


def test_the_header_names_the_attempt_its_time_host_and_slurm_job():
    now = datetime(2026, 12, 7, 23, 41, 2, tzinfo=timezone.utc)
    assert header(1, now, "n01", {}) == "=== attempt 1 · 2026-12-07 23:41:02 UTC · host n01 ==="
    assert header(3, now, "n01", {"SLURM_JOB_ID": "812"}) == \
        "=== attempt 3 · 2026-12-07 23:41:02 UTC · host n01 · SLURM job 812 ==="


def test_attempts_append_in_order_and_a_header_starts_its_own_line(tmp_path):
    log = tmp_path / "logs" / "lm_train" / "cell.log"
    first = start_attempt(log, {})
    with open(log, "a") as handle:
        handle.write("train:  40%|████      | 20/50\r")  # killed mid progress bar
    second = start_attempt(log, {"SLURM_JOB_ID": "9"})
    text = log.read_bytes().decode()
    assert text == f"{first}\ntrain:  40%|████      | 20/50\r\n{second}\n"
    assert first.startswith("=== attempt 1 · ") and second.startswith("=== attempt 2 · ")
    assert second.endswith(" · SLURM job 9 ===") and attempts_in(log) == 2


def test_a_log_snakemake_deleted_comes_back_with_every_earlier_attempt(tmp_path):
    """Snakemake deletes a job's log before running it again: what the killed attempt wrote (through the log's
    name, as `>> {log}` does) survives in the attempts file, and the next attempt appends to it."""
    log = tmp_path / "cell.log"
    start_attempt(log, {})
    with open(log, "a") as handle:
        handle.write("resuming from nowhere: the first attempt's own words\n")
    log.unlink()  # Snakemake, before the rerun
    start_attempt(log, {})
    lines = log.read_text().splitlines()
    assert [line.split(" · ")[0] for line in lines] == ["=== attempt 1", "resuming from nowhere: the first "
                                                        "attempt's own words", "=== attempt 2"]
    with open(log, "a") as handle:
        handle.write("second\n")
    assert (tmp_path / ".cell.log.attempts").read_text() == log.read_text()  # one file under two names


def test_without_hard_links_each_attempt_still_gets_its_header(tmp_path, monkeypatch):
    """A file system that refuses hard links: no error, the log starts afresh with its header."""
    import os

    def refuse(*args):
        raise OSError(1, "Operation not permitted")

    log = tmp_path / "cell.log"
    monkeypatch.setattr(os, "link", refuse)
    assert start_attempt(log, {}).startswith("=== attempt 1 · ")
    assert log.read_text().startswith("=== attempt 1 · ") and not log.samefile(tmp_path / ".cell.log.attempts")
