"""Optimiser groups, schedule, micro-batches, checkpoints, and exact resume of a training run killed with SIGKILL or
preempted, also in the middle of accumulating micro-batches."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wdrank.checkpoint import CheckpointError, load_weights, save_checkpoint
from wdrank.metrics_log import MetricsLog
from wdrank.models.lm import LMShape, build_lm
from wdrank.optim import WeightDecays, build_optimizer, parameter_groups
from wdrank.schedule import Schedule


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_every_parameter_in_exactly_one_group_with_the_right_role(architecture):
    model = build_lm(LMShape(architecture, 2, 16, 2, 8, 50), seed=0)
    groups = {g["role"]: g for g in parameter_groups(model, WeightDecays(attention=1.0, mlp=0.1))}
    names = {role: set(g["param_names"]) for role, g in groups.items()}
    all_names = {n for n, _ in model.named_parameters()}
    assert set().union(*names.values()) == all_names and sum(map(len, names.values())) == len(all_names)
    if architecture == "gpt2":
        assert names["attention"] == {f"transformer.h.{i}.attn.{m}.weight" for i in range(2) for m in ("c_attn", "c_proj")}
        assert names["mlp"] == {f"transformer.h.{i}.mlp.{m}.weight" for i in range(2) for m in ("c_fc", "c_proj")}
    else:
        assert names["attention"] == {f"model.layers.{i}.self_attn.{m}_proj.weight" for i in range(2) for m in "qkvo"}
        assert len(names["mlp"]) == 6
    assert all("bias" not in n and "ln" not in n and "norm" not in n for n in names["attention"] | names["mlp"])
    assert groups["attention"]["weight_decay"] == 1.0 and groups["mlp"]["weight_decay"] == 0.1
    assert groups["other"]["weight_decay"] == 0.0


def test_adamw_decay_is_decoupled_and_per_group():
    """With zero gradients AdamW only shrinks weights, by exactly (1 − lr·λ) per group."""
    model = build_lm(LMShape("gpt2", 1, 16, 2, 8, 50), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, WeightDecays(attention=2.0, mlp=0.5, other=0.0), lr=0.1, betas=(0.9, 0.95),
                                eps=1e-8)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = dict(model.named_parameters())
    torch.testing.assert_close(after["transformer.h.0.attn.c_attn.weight"], before["transformer.h.0.attn.c_attn.weight"] * 0.8)
    torch.testing.assert_close(after["transformer.h.0.mlp.c_fc.weight"], before["transformer.h.0.mlp.c_fc.weight"] * 0.95)
    torch.testing.assert_close(after["transformer.wte.weight"], before["transformer.wte.weight"])


def test_negative_decay_is_refused():
    with pytest.raises(ValueError, match="attention group must be >= 0"):
        WeightDecays(attention=-1, mlp=0)


def test_schedule_warms_up_then_decays_to_the_floor():
    schedule = Schedule(steps=100, batch_size=8, warmup_steps=10, min_lr_ratio=0.1)
    assert schedule.lr_factor(0) == pytest.approx(0.1) and schedule.lr_factor(9) == pytest.approx(1.0)
    assert schedule.lr_factor(10) == pytest.approx(1.0)
    assert schedule.lr_factor(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule.lr_factor(100) == pytest.approx(0.1)
    assert schedule.saves_at() == [100]


def test_corrupted_checkpoint_names_the_file(tmp_path):
    model = build_lm(LMShape("gpt2", 1, 16, 2, 8, 50), seed=0)
    path = save_checkpoint(tmp_path, 5, model, None, None)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(weights)):
        load_weights(path)


def train_command(data_dir, run_dir, steps, checkpoint_every, batch_size=4, micro_batch_size=None):
    settings = {
        "model": {"architecture": "gpt2", "n_layer": 2, "n_embd": 16, "n_head": 2, "n_kv_head": None, "context": 16,
                  "vocab_size": None},
        "train": {"steps": steps, "batch_size": batch_size, "micro_batch_size": micro_batch_size, "lr": 0.01,
                  "warmup_steps": 5, "min_lr_ratio": 0.1, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "grad_clip": 1.0,
                  "wd_other": 0.0, "eval_every": 25, "eval_batches": 1, "checkpoint_every": checkpoint_every},
    }
    return [sys.executable, "-m", "wdrank", "train", "language_model", "--settings", json.dumps(settings),
            "--data-dir", str(data_dir), "--wd-attn", "1.0", "--wd-mlp", "0.1", "--seed", "3",
            "--summary", str(run_dir / "run" / "summary.json"), "--metrics", str(run_dir / "run" / "metrics.jsonl"),
            "--checkpoint-dir", str(run_dir / "ckpt")]


@pytest.mark.slow
@pytest.mark.parametrize("micro_batch_size", [None, 1])
def test_run_killed_midway_resumes_to_identical_weights(tiny_corpus, tmp_path, micro_batch_size):
    """SIGKILL at any moment (with micro-batches: most likely between two of them, with gradients half accumulated)
    loses only the steps since the last checkpoint, which are always between optimizer steps."""
    steps = 200
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(run_dir):
        return train_command(tiny_corpus, run_dir, steps, 5, micro_batch_size=micro_batch_size)

    reference = tmp_path / "uninterrupted"
    subprocess.run(command(reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "ckpt" / "step_000010").exists():
        assert time.time() < deadline and process.poll() is None, "run ended before it could be killed"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "run" / "summary.json").exists(), "the run finished before the kill: nothing was tested"
    interrupted_at = max(int(p.name.split("_")[1]) for p in (killed / "ckpt").glob("step_*"))
    assert interrupted_at < steps
    shutil.rmtree(killed / "run", ignore_errors=True)  # what Snakemake does to a job's outputs before a rerun

    subprocess.run(command(killed), check=True, env=env, capture_output=True)
    final = f"step_{steps:06d}/model.safetensors"
    resumed, uninterrupted = load_file(killed / "ckpt" / final), load_file(reference / "ckpt" / final)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name
    summary = json.loads((killed / "run" / "summary.json").read_text())
    assert summary["row"] == json.loads((reference / "run" / "summary.json").read_text())["row"]
    # the learning curve outlives the kill and the deleted output: every record once, the uninterrupted run's values
    resumed_log = (killed / "run" / "metrics.jsonl").read_text()
    assert resumed_log == (reference / "run" / "metrics.jsonl").read_text()
    logged_steps = [json.loads(line)["step"] for line in resumed_log.splitlines() if "train_loss" in line]
    assert logged_steps == list(range(10, steps + 1, 10))


def test_a_resumed_learning_curve_holds_each_step_once(tmp_path):
    """A run killed after logging step 30 resumes from its step-20 checkpoint: the log is cut back to step 20, so
    the repeated steps 21-30 are logged once, by the resumed run."""
    log = MetricsLog(tmp_path)
    log.resume_from(0)
    with log:
        for step in range(0, 31, 5):
            log.append({"step": step, "train_loss": 1.0})
    log.resume_from(20)
    assert [record["step"] for record in log.records()] == [0, 5, 10, 15, 20]
    with log:
        for step in range(25, 41, 5):
            log.append({"step": step, "train_loss": 0.5})
    assert [record["step"] for record in log.records()] == list(range(0, 41, 5))
    assert [record["train_loss"] for record in log.records()][-4:] == [0.5] * 4


@pytest.mark.slow
def test_resume_drops_a_metrics_line_cut_short_by_a_kill(tiny_corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(train_command(tiny_corpus, tmp_path, 20, 10), check=True, env=env, capture_output=True)
    published, live = tmp_path / "run" / "metrics.jsonl", tmp_path / "ckpt" / "metrics.jsonl"
    complete = published.read_text()
    assert live.read_text() == complete and '"step": 20' in complete
    (tmp_path / "ckpt" / "step_000020").rename(tmp_path / "ckpt" / ".discarded")  # resume from step 10
    live.write_text(complete + '{"step": 21, "train_lo')  # what a SIGKILL in mid-write leaves
    published.unlink()
    subprocess.run(train_command(tiny_corpus, tmp_path, 20, 10), check=True, env=env, capture_output=True)
    assert published.read_text() == complete  # same lines, same values: the partial line is gone, nothing doubled


@pytest.mark.slow
def test_diverging_run_fails_clearly_and_writes_no_summary(tiny_corpus, tmp_path):
    command = train_command(tiny_corpus, tmp_path, 50, 0)
    settings = json.loads(command[command.index("--settings") + 1])
    settings["train"]["lr"] = 1e30
    command[command.index("--settings") + 1] = json.dumps(settings)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0
    assert "diverged" in result.stderr and "not finite (nan or inf) at step " in result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_test_perplexity_is_the_mean_nll_over_every_predicted_token():
    """mean_token_nll against a direct computation: windows of `context`, each window's first token unpredicted."""
    from wdrank.experiments.lm import mean_token_nll

    model = build_lm(LMShape("gpt2", 1, 16, 2, 8, 50), seed=0).eval()
    tokens = np.random.default_rng(0).integers(0, 50, 29).astype(np.uint16)  # windows of 8, 8, 8, 5
    nll, count = mean_token_nll(model, tokens, context=8, batch_size=2)
    total, expected_count = 0.0, 0
    with torch.no_grad():
        for start in range(0, 29, 8):
            window = torch.from_numpy(tokens[start:start + 8].astype(np.int64))[None]
            logits = model(input_ids=window).logits[0, :-1].double()
            total += torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="sum").item()
            expected_count += window.shape[1] - 1
    assert count == expected_count == 29 - 4
    assert nll == pytest.approx(total / expected_count, rel=1e-12)
    regrouped, regrouped_count = mean_token_nll(model, tokens, context=8, batch_size=3)
    assert regrouped_count == count and regrouped == pytest.approx(nll, rel=1e-12)


PREEMPTED_STEPS = 400


@pytest.fixture(scope="module")
def uninterrupted_runs(tiny_corpus, tmp_path_factory):
    """Runs of PREEMPTED_STEPS steps, checkpointed every 200, never interrupted: one per micro-batch size."""
    runs = {}

    def run(micro_batch_size):
        if micro_batch_size not in runs:
            runs[micro_batch_size] = tmp_path_factory.mktemp("uninterrupted")
            subprocess.run(train_command(tiny_corpus, runs[micro_batch_size], PREEMPTED_STEPS, 200,
                                         micro_batch_size=micro_batch_size),
                           check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return runs[micro_batch_size]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("signum, micro_batch_size", [(signal.SIGTERM, None), (signal.SIGUSR1, None),
                                                      (signal.SIGUSR1, 1)])
def test_preemption_signal_checkpoints_the_step_and_the_rerun_matches(tiny_corpus, uninterrupted_runs, tmp_path,
                                                                      signum, micro_batch_size):
    """What SLURM sends before preempting a job: the run finishes the optimizer step it is in (with micro-batches,
    the signal most likely arrives between two of them), saves it, exits non-zero, and the rerun resumes from there
    to the weights of an uninterrupted run (the extra checkpoint is pruned once passed)."""
    steps, reference = PREEMPTED_STEPS, uninterrupted_runs(micro_batch_size)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    preempted = tmp_path / "preempted"
    process = subprocess.Popen(train_command(tiny_corpus, preempted, steps, 200, micro_batch_size=micro_batch_size),
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (preempted / "ckpt" / "step_000000").exists():
        assert time.time() < deadline and process.poll() is None, "run ended before the signal"
        time.sleep(0.01)
    time.sleep(0.3)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-2000:]
    stopped_at = int(stderr.split("checkpointed step ")[1].split()[0])
    assert 0 < stopped_at < steps and (preempted / "ckpt" / f"step_{stopped_at:06d}").is_dir()
    assert not (preempted / "run" / "summary.json").exists()

    subprocess.run(train_command(tiny_corpus, preempted, steps, 200, micro_batch_size=micro_batch_size), check=True,
                   env=env, capture_output=True)
    final = f"step_{steps:06d}/model.safetensors"
    resumed, uninterrupted = load_file(preempted / "ckpt" / final), load_file(reference / "ckpt" / final)
    for name in uninterrupted:
        assert torch.equal(resumed[name], uninterrupted[name]), name
    assert sorted(p.name for p in (preempted / "ckpt").glob("step_*")) == [
        "step_000000", "step_000200", "step_000400"]


def test_a_signal_before_training_starts_is_kept_for_the_loop():
    """The training command records SIGTERM from its first moment (before torch loads); the loop's own, nested
    recording sees it, and the handlers are restored once the outermost recording ends."""
    from wdrank.preemption import preemption_signals

    before = signal.getsignal(signal.SIGTERM)
    with preemption_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        with preemption_signals() as received:
            assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not before  # still recording
    assert signal.getsignal(signal.SIGTERM) is before
    with preemption_signals() as received:
        assert received == []


@pytest.mark.slow
def test_two_data_parallel_processes_train_the_same_model_as_one(tiny_corpus, tmp_path):
    """torchrun with 2 CPU processes (gloo): each takes half of the same global batch; DDP averages gradients, so
    the weights match a single process up to floating-point reassociation; only rank 0 writes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    subprocess.run(train_command(tiny_corpus, single, 40, 20), check=True, env=env, capture_output=True)
    command = train_command(tiny_corpus, tmp_path / "ddp", 40, 20)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "wdrank"]
    result = subprocess.run(launch + command[3:], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    final = "step_000040/model.safetensors"
    parallel, reference = load_file(tmp_path / "ddp/ckpt" / final), load_file(single / "ckpt" / final)
    parallel, reference = comparable(parallel), comparable(reference)
    for name in reference:
        torch.testing.assert_close(parallel[name], reference[name], rtol=1e-4, atol=1e-5)
    metrics = (tmp_path / "ddp/run/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics if "train_loss" in line] == [10, 20, 30, 40]
    summary = json.loads((tmp_path / "ddp/run/summary.json").read_text())
    assert summary["session"]["device"] == "2 x cpu" and summary["session"]["tokens_per_second"] > 0
    single_summary = json.loads((single / "run/summary.json").read_text())
    assert summary["row"]["test_perplexity"] == pytest.approx(single_summary["row"]["test_perplexity"], rel=1e-4)


def comparable(weights):
    """Weights to compare across runs that differ only in rounding. The key bias shifts every score of a query
    equally, so its gradient is zero up to rounding, and Adam turns rounding noise into full-size steps: only the
    query and value biases of GPT-2's fused c_attn bias (rows [q | k | v], d_model 16 here) are comparable."""
    return {name: value[[*range(16), *range(32, 48)]] if name.endswith("attn.c_attn.bias") else value
            for name, value in weights.items()}


def test_micro_batches_accumulate_to_the_full_batch_gradient(tiny_corpus):
    """One step's gradient: the whole batch at once, or its rows in micro-batches of 4 or 1, agree to float32
    rounding (the language model computes its loss in float32)."""
    from wdrank.data.text import load_tokens
    from wdrank.device import Compute, Placement
    from wdrank.experiments.lm import LMTask
    from wdrank.train import _accumulate_gradients

    tokens = {split: load_tokens(tiny_corpus, split) for split in ("train", "validation")}
    task = LMTask(tokens["train"], tokens["validation"], context=16, batch_size=8, seed=0, eval_batches=1,
                  eval_batch_size=8)
    model = build_lm(LMShape("gpt2", 2, 16, 2, 16, 300), seed=0)
    results = {}
    for micro in (8, 4, 1):
        model.zero_grad()
        rows = Schedule(steps=1, batch_size=8, micro_batch_size=micro).micro_batches(rank=0, world_size=1)
        assert len(rows) == 8 // micro
        parts = [task.batch(3, part) for part in rows]  # each micro-batch holds its own rows, and only those
        assert [len(part) for part in parts] == [micro] * (8 // micro)
        torch.testing.assert_close(torch.cat(parts), task.batch(3, slice(0, 8)), rtol=0, atol=0)
        loss = _accumulate_gradients(task, task.training_module(model), None, 3, rows, Placement(torch.device("cpu")),
                                     Compute())
        results[micro] = loss.item(), {name: p.grad.clone() for name, p in model.named_parameters()}
    full_loss, full_gradient = results[8]
    for micro in (4, 1):
        loss, gradient = results[micro]
        assert loss == pytest.approx(full_loss, rel=1e-6)
        for name, value in full_gradient.items():
            torch.testing.assert_close(gradient[name], value, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
def test_micro_batches_of_8_and_32_train_the_same_weights(tiny_corpus, tmp_path):
    """40 steps of a batch of 32, at once or in 4 micro-batches of 8: the same weights within rtol 1e-4, atol 1e-5
    (float32 sums in another order, through 40 Adam steps)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for micro in (None, 8):
        subprocess.run(train_command(tiny_corpus, tmp_path / f"m{micro}", 40, 0, batch_size=32, micro_batch_size=micro),
                       check=True, env=env, capture_output=True)
    final = "ckpt/step_000040/model.safetensors"
    whole, micro = comparable(load_file(tmp_path / "mNone" / final)), comparable(load_file(tmp_path / "m8" / final))
    for name, value in whole.items():
        torch.testing.assert_close(micro[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert not all(torch.equal(micro[name], value) for name, value in whole.items())  # really another computation


# Every way a tensor's value reaches the host (each one stalls a GPU until the device has caught up).
HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


def test_the_loop_reads_device_values_only_at_log_steps(tmp_path, monkeypatch):
    """On a GPU every read of a tensor's value stalls the device: the loop reads the loss, the gradient norm and
    its divergence check at log steps (and before a checkpoint or an evaluation), never in an ordinary step. Every
    way to read a value is watched (item, float(), int(), bool(), tolist, cpu, numpy)."""
    from wdrank.train import train

    current = {"step": None}

    class Regression:
        def batch(self, step, rows):
            current["step"] = step + 1  # the step being computed, as the loop counts them (1-based)
            return torch.ones(8, 4)[rows] * step

        def loss(self, model, batch):
            return model(batch).square().mean()

        def evaluate(self, model):
            return {}

    reads = {}
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def watched(tensor, *args, _original=original, **kwargs):
            reads[current["step"]] = reads.get(current["step"], 0) + 1
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, watched)
    model = torch.nn.Linear(4, 1)
    schedule = Schedule(steps=50, batch_size=8, micro_batch_size=2, log_every=10)
    train(model, torch.optim.SGD(model.parameters(), lr=1e-3), Regression(), schedule, tmp_path / "ckpt",
          tmp_path / "metrics.jsonl", progress=False)
    # log steps: the divergence check, the loss and the gradient norm; the last step also checkpoints and evaluates
    assert {step: count for step, count in reads.items() if step != 50} == {10: 3, 20: 3, 30: 3, 40: 3}, reads


def test_micro_batches_that_do_not_divide_the_batch_are_refused():
    with pytest.raises(ValueError, match="micro_batch_size 3: allowed a divisor of the per-process batch 4"):
        Schedule(steps=1, batch_size=8, micro_batch_size=3).micro_batches(rank=1, world_size=2)
    assert Schedule(steps=1, batch_size=8, micro_batch_size=2).micro_batches(rank=1, world_size=2) == [
        slice(4, 6), slice(6, 8)]
