"""The workflow on a real SLURM, as a shared, preemptible GPU cluster treats it: a single-node cluster from Debian
packages on 127.0.0.1 (tests/slurm/) with preemptible partitions, the workflow submitted through the SLURM profile.

- Preemption, for real: a job in a higher-tier partition pushes the training jobs out, so that SLURM cancels
  (PreemptMode=CANCEL) or requeues (PreemptMode=REQUEUE) them, as on a shared GPU partition. Both kinds come back,
  resume from their checkpoints, and the workflow ends green with the tables, weights and learning curves of a local
  run, byte for byte.
- A time limit (cut to one minute while the job trains, warning signal), and a cell that fails for good: the
  time-limited job checkpoints, ends, is resubmitted and resumes; the failed cell stops no other, and is named with
  its log.

Skipped where the machine cannot host the daemons (not root, not Debian, no plugin)."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import PATH_WITH_SLURM, REPO, finished_run, snakemake_command

HARNESS = Path(__file__).parent / "slurm"
# Without slurmdbd there is no sacct: the plugin must poll squeue, and start polling soon (tests/slurm/slurm-up.sh
# keeps finished jobs visible to squeue for 10 minutes). Status polled every second (default 10 s).
SLURM_OPTIONS = ["--profile", str(REPO / "workflow/profiles/slurm"), "--slurm-status-command", "squeue",
                 "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "1",
                 "--latency-wait", "5"]
OFF = {name: {"enabled": False} for name in ("factorized", "vision_transformer", "scalar_pair", "audit", "lora")}
# Training long enough to be preempted after its first checkpoint and still be running (a language model trains
# about 130 steps a second beside another, the toy about 700), and no longer: the steps after a resume only add time.
LM = {
    "data": {"vocab_size": 300},
    "model": {"n_layer": 2, "n_embd": 16, "n_head": 2, "context": 32},
    "train": {"steps": 3000, "batch_size": 8, "warmup_steps": 3, "eval_every": 1000, "eval_batches": 1,
              "checkpoint_every": 1000},
    "sweep": {"wd_attn": [0.0, 3.0], "wd_mlp": [0.1], "seeds": [0]},
}
# The time-limited cell trains for a minute or so (30 s at least on a machine twice as fast): its warning signal comes
# within SLURM's 30 s check of the time limit being cut, which must find it training.
LONG_LM = {**LM, "train": {**LM["train"], "steps": 8000, "eval_every": 2000, "checkpoint_every": 2000}}
TOY = {
    "model": {"x_dim": 2, "n_layer": 2, "d_model": 8, "n_head": 2, "d_head": 4},
    "train": {"steps": 10000, "batch_size": 16, "context": 6, "record_points": 5, "eval_size": 64},
    "sweep": {"wd_attn": [1.0], "seeds": [0]},
}
GRID = {**OFF, "language_model": LM, "toy_transformer": TOY}
LM_CELLS = ["wd_attn~0.0/wd_mlp~0.1/seed~0", "wd_attn~3.0/wd_mlp~0.1/seed~0"]
TOY_CELL = "wd_attn~1.0/seed~0"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def cannot_host_slurm() -> str | None:
    if os.geteuid() != 0:
        return "needs root: installs Debian packages and starts munged, slurmctld and slurmd"
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "needs a Debian machine (apt-get) for the slurm packages"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return 'needs the SLURM executor plugin: pip install -e ".[slurm]"'
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_on_the_path():
    """The SLURM client the suite keeps from every other test (conftest.without_a_slurm_controller): these tests,
    the workflows they submit and the jobs (which inherit the submitting environment) talk to the cluster below."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", PATH_WITH_SLURM)
        yield


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if reason := cannot_host_slurm():
        pytest.skip(reason)
    env = {**os.environ, "SLURM_BASE": str(tmp_path_factory.mktemp("slurm"))}
    try:
        up = subprocess.run(["bash", str(HARNESS / "slurm-up.sh")], env=env, capture_output=True, text=True,
                            timeout=900)
        assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}"
        yield env
    finally:
        subprocess.run(["bash", str(HARNESS / "slurm-down.sh")], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    """GRID run locally, uninterrupted: what the preempted runs below must reproduce byte for byte."""
    return finished_run(tmp_path_factory, "local_grid", GRID)


@pytest.fixture
def local_long_cell(tmp_path_factory):
    """The time-limited cell (LONG_LM, λ_SA = 0) run locally, uninterrupted: what its resumed run must reproduce.
    Started in the background, it trains on the core that the time-limited job leaves free; calling the fixture's
    value waits for it and gives its folder."""
    workdir = tmp_path_factory.mktemp("local_long_cell")
    cell = {**LONG_LM, "sweep": {**LONG_LM["sweep"], "wd_attn": [0.0]}}
    command = snakemake_command(workdir, config={**OFF, "language_model": cell, "toy_transformer": {"enabled": False}})
    with open(workdir / "snakemake.out", "w") as output:
        run = subprocess.Popen(command, cwd=workdir, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def finished():
        assert run.wait(timeout=900) == 0, (workdir / "snakemake.out").read_text()[-3000:]
        return workdir

    yield finished
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()


def start_on_slurm(workdir, config, *extra):
    """Submit the workflow through the SLURM profile in the background (its own process group)."""
    (workdir / "cluster.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(workdir / "cluster.yaml"), *SLURM_OPTIONS, *extra]
    with open(workdir / "snakemake.out", "w") as output:  # a file, not a pipe: a long output must never block it
        return subprocess.Popen(command, cwd=workdir, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def jobs(partitions: str) -> dict[str, tuple[str, str, str, str]]:
    """{job id: (state, reason, partition, comment)} of every job of these partitions that SLURM still lists (the
    plugin's comment names the rule and the wildcards: rule_lm_train_wildcards_0.0_0.1_0)."""
    listed = subprocess.run(["squeue", "--states=all", "--noheader", "--partition", partitions, "--format",
                             "%i|%T|%r|%P|%k"], capture_output=True, text=True, check=True).stdout
    return {fields[0]: tuple(fields[1:]) for fields in (line.split("|") for line in listed.splitlines())}


def take_the_node() -> None:
    """A job of the higher-tier partition that needs every CPU: SLURM preempts whatever runs in the others."""
    subprocess.run(["sbatch", "--partition", "urgent", "--cpus-per-task", "4", "--mem", "100", "--output",
                    "/dev/null", "--wrap", "sleep 2"], check=True, capture_output=True)


def restarts(job: str) -> int:
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    return int(re.search(r"Restarts=(\d+)", shown).group(1))


def watch(workflow, workdir, on_tick=lambda: None, timeout=600) -> str:
    """Wait for the workflow to end, calling `on_tick` every 0.2 s; returns its output."""
    deadline = time.monotonic() + timeout
    while workflow.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(workflow.pid, signal.SIGTERM)
            raise AssertionError(f"the workflow did not end: hung?\n{(workdir / 'snakemake.out').read_text()[-5000:]}")
        on_tick()
        time.sleep(0.2)
    return (workdir / "snakemake.out").read_text()


def checkpoints_past_zero(workdir, experiment, cell) -> bool:
    return any(p.name != "step_000000" for p in (workdir / f"results/{experiment}/checkpoints/{cell}").glob("step_*"))


def assert_same_results(workdir, local, cells):
    """Final weights and learning curves of each (experiment, cell), byte for byte, and every logged step once."""
    for experiment, cell, final in cells:
        for path in (f"checkpoints/{cell}/{final}/model.safetensors", f"runs/{cell}/metrics.jsonl"):
            produced, expected = workdir / f"results/{experiment}/{path}", local / f"results/{experiment}/{path}"
            assert produced.read_bytes() == expected.read_bytes(), path
        logged = [json.loads(line)["step"] for line in (workdir / f"results/{experiment}/runs/{cell}/metrics.jsonl")
                  .read_text().splitlines() if "train_loss" in json.loads(line)]
        assert logged == sorted(set(logged)), f"{cell}: a step logged twice"


def test_preempted_training_comes_back_whether_slurm_cancels_or_requeues_it(slurm_cluster, local_grid, tmp_path):
    """The language models train in a partition whose PreemptMode is CANCEL, the toy Transformer in one whose
    PreemptMode is REQUEUE. Once a job has a checkpoint past step 0, a job of the higher-tier partition takes the
    whole node and SLURM preempts it (the toy first, then the two language models). The cancelled ones end in state
    PREEMPTED, on which the plugin alone would wait forever; the workflow requeues them. SLURM requeues the toy
    itself. Requeued jobs are held two minutes by SLURM (BeginTime); the test releases them at once to stay short."""
    config = {**GRID, "resources": {"default": {"slurm_account": "root"},
                                    "lm_train": {"slurm_partition": "preempt_cancel"},
                                    "toy_train": {"slurm_partition": "preempt_requeue"}}}
    workflow = start_on_slurm(tmp_path, config)
    preempted, seen = {}, {}  # {partition: job ids pushed out}, {job id: states seen in turn}

    def preempt_then_release():
        training = jobs("preempt_cancel,preempt_requeue")
        for job, (state, *_) in training.items():
            if seen.get(job, [None])[-1] != state:
                seen.setdefault(job, []).append(state)
        running = {job: partition for job, (state, _, partition, _) in training.items() if state == "RUNNING"}
        # first the toy, then the language models, each once it has a checkpoint past step 0 (the toy starts at once
        # and is short; the language models wait for their data)
        toy_ready = "preempt_requeue" not in preempted and "preempt_requeue" in running.values() \
            and checkpoints_past_zero(tmp_path, "toy", TOY_CELL)
        models_ready = "preempt_requeue" in preempted and len(preempted.get("preempt_cancel", ())) < 2 \
            and list(running.values()).count("preempt_cancel") == 2 \
            and all(checkpoints_past_zero(tmp_path, "lm", cell) for cell in LM_CELLS)
        if toy_ready or models_ready:
            take_the_node()
            for job, partition in running.items():
                preempted.setdefault(partition, set()).add(job)
        for job in preempted.get("preempt_cancel", set()) | preempted.get("preempt_requeue", set()):
            if training.get(job, ("",))[0] == "PENDING":  # held until BeginTime once requeued: release it
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)

    output = watch(workflow, tmp_path, preempt_then_release)
    assert workflow.returncode == 0, output[-5000:]
    # only jobs that compute were submitted; tables and figures ran on this host
    submitted = set(re.findall(r"has been submitted with SLURM jobid \d+ \(log: \S+/slurm_logs/rule_(\w+)/", output))
    assert submitted == {"lm_data", "lm_train", "toy_train", "run_spectra"}, submitted
    assert len(preempted.get("preempt_cancel", ())) == 2 and len(preempted.get("preempt_requeue", ())) == 1, seen
    # CANCEL: RUNNING -> PREEMPTED (the job is over) -> requeued by the workflow -> PENDING -> RUNNING -> COMPLETED
    for job in preempted["preempt_cancel"]:
        # back in the queue after it ran (the PREEMPTED state itself may last less than one of this test's polls:
        # the warning below says the workflow saw it)
        assert "PENDING" in seen[job][seen[job].index("RUNNING"):] and seen[job][-1] == "COMPLETED", seen
        assert f"SLURM job {job} (lm_train) was preempted and cancelled (PreemptMode=CANCEL); requeued it: it runs " \
               "again and resumes from its last checkpoint" in output
    # REQUEUE: SLURM puts the job back in the queue itself, never showing PREEMPTED
    (requeued,) = preempted["preempt_requeue"]
    assert "PREEMPTED" not in seen[requeued] and "PENDING" in seen[requeued][1:], seen
    assert seen[requeued][-1] == "COMPLETED" and all(restarts(job) >= 1 for jobs in preempted.values() for job in jobs)
    for log in [f"logs/lm_train/{cell}.log" for cell in LM_CELLS] + [f"logs/toy_train/{TOY_CELL}.log"]:
        # every attempt kept, each under its header naming the job (requeued: the same id); the last one resumed
        text = (tmp_path / log).read_text()
        job_ids = re.findall(r"^=== attempt \d+ · .* · host \S+ · SLURM job (\d+) ===$", text, flags=re.MULTILINE)
        assert len(job_ids) >= 2 and len(set(job_ids)) == 1, (log, job_ids)
        last = text.split("=== attempt ")[-1]
        assert re.search(r"resuming from .*step_\d+ \(step [1-9]\d*\)", last), log
    tables = sorted(p.name for p in (local_grid / "results/tables").iterdir())
    assert sorted(p.name for p in (tmp_path / "results/tables").iterdir()) == tables
    for table in tables:
        produced, expected = tmp_path / "results/tables" / table, local_grid / "results/tables" / table
        assert produced.read_bytes() == expected.read_bytes(), table
    assert_same_results(tmp_path, local_grid, [("lm", cell, "step_003000") for cell in LM_CELLS]
                        + [("toy", TOY_CELL, "step_010000")])


def test_a_time_limit_resubmits_and_resumes_and_a_failed_cell_stops_no_other(slurm_cluster, local_long_cell,
                                                                               tmp_path):
    """One language-model cell, warned 60 s ahead of its time limit: once it trains (past step 100, some 15 s into
    its job), its limit is cut to one minute (scontrol, as an administrator would). The warning is then due at once,
    and SLURM, which checks time limits every 30 s, sends the SIGTERM within 30 s, while it trains, and before the
    limit itself: never before the job has started the command that records it, as a one-minute limit from the
    start could. It checkpoints and ends; Snakemake resubmits it, with the configured ten minutes, and it resumes, to
    the weights of the uninterrupted run. The other cell fails for good (its checkpoint folder is a file): the
    workflow keeps going, finishes every job that does not need it, fails, and names the cell and its log. A short
    toy run, given 2 CPUs, trains with 2 threads."""
    failing = tmp_path / f"results/lm/checkpoints/{LM_CELLS[1]}"
    failing.parent.mkdir(parents=True)
    failing.write_text("not a folder")
    short_toy = {**TOY, "train": {**TOY["train"], "steps": 300}}
    config = {**GRID, "language_model": LONG_LM, "toy_transformer": short_toy, "time_limit_warning": 60,
              "resources": {"default": {"slurm_account": "root"}, "lm_train": {"runtime": 10},
                            "toy_train": {"cpus_per_task": 2}}}
    workflow = start_on_slurm(tmp_path, config)
    training_log = tmp_path / f"logs/lm_train/{LM_CELLS[0]}.log"
    attempts, cut = [], []  # SLURM jobs of the time-limited cell, in order; the one whose limit was cut

    def step_shown():
        """The last step the cell's progress bar shows (0 before it has one)."""
        shown = re.findall(rf"(\d+)/{LONG_LM['train']['steps']}", training_log.read_text()) if training_log.exists() \
            else []
        return max(map(int, shown), default=0)

    def cut_the_first_attempts_time_limit_once_it_trains():
        for job, (*_, comment) in jobs("debug").items():
            if comment == "rule_lm_train_wildcards_0.0_0.1_0" and job not in attempts:
                attempts.append(job)
        if attempts and not cut and step_shown() > 100:
            subprocess.run(["scontrol", "update", f"JobId={attempts[0]}", "TimeLimit=1"], check=True,
                           capture_output=True)
            cut.append(attempts[0])  # once: the resubmitted job keeps its ten minutes

    output = watch(workflow, tmp_path, cut_the_first_attempts_time_limit_once_it_trains)
    assert workflow.returncode != 0
    log = training_log.read_text()
    assert re.search(r"resuming from .*step_\d+ \(step [1-9]\d*\)", log), "never stopped by the time limit"
    assert len(attempts) == 2 and cut == attempts[:1], (attempts, cut)
    assert "received SIGTERM: checkpointed step" in output and "Error in rule lm_train" in output
    assert_same_results(tmp_path, local_long_cell(), [("lm", LM_CELLS[0], "step_008000")])
    assert (tmp_path / f"results/lm/runs/{LM_CELLS[0]}/spectra.parquet").exists()
    # the failed cell: named at the end with its log; the toy's tables and figure were made all the same
    assert f"wdrank: 1 training cell did not finish:\n  lm_train {LM_CELLS[1]}\n    log: logs/lm_train/" in output
    assert not (tmp_path / "results/tables/lm_runs.csv").exists()
    assert (tmp_path / "results/figures/fig2_toy_transformer.png").exists()
    toy = json.loads((tmp_path / f"results/toy/runs/{TOY_CELL}/summary.json").read_text())
    assert toy["session"]["threads"] == 2  # resources cpus_per_task 2 -> 2 CPUs on the node -> 2 threads
