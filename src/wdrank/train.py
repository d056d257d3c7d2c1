"""The one training loop of every experiment: schedule, clipping, evaluation, checkpoints, exact resume.

A task supplies batches as a pure function of the step (so a resumed run sees the same data as an
uninterrupted one), its loss, and its evaluation. The loop restarts from the latest complete checkpoint in
`checkpoint_dir`, logs metrics as JSON lines, and stops with a clear error on a non-finite loss. It runs where
`wdrank.device` places it (CPU, a GPU, or one of several DDP processes). SIGTERM or SIGUSR1 (what SLURM sends
before preempting or at the time limit) make it checkpoint the step it is on and raise `Preempted`; the rerun
resumes from there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from wdrank.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint, save_checkpoint
from wdrank.device import (
    Compute, Placement, any_process, autocast, mean_over_processes, move, place, shard, wait_for_all,
)
from wdrank.optim import WeightDecays, build_optimizer
from wdrank.preemption import Preempted, preemption_signals

TIMED_AFTER = 3  # steps of a session left out of the throughput (allocation, compilation)


def _prune_unscheduled(directory: str | Path, saves: list[int], before: int) -> None:
    """Remove checkpoints written on preemption once a scheduled one after them exists (they are resume points,
    not results: spectra are measured at scheduled steps only)."""
    for path in list_checkpoints(directory):
        if checkpoint_step(path) < before and checkpoint_step(path) not in saves:
            shutil.rmtree(path)


class Task(Protocol):
    def batch(self, step: int) -> Any: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...


@dataclass(frozen=True)
class Schedule:
    steps: int
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # cosine decays from lr to min_lr_ratio * lr
    grad_clip: float | None = 1.0
    eval_every: int = 0  # 0: evaluate at the end only
    log_every: int = 10
    checkpoint_steps: tuple[int, ...] = ()  # the final step is always checkpointed

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"invalid schedule {self}: need steps >= 1, warmup_steps >= 0, 0 <= min_lr_ratio <= 1")
        if any(not 0 <= s <= self.steps for s in self.checkpoint_steps):
            raise ValueError(f"checkpoint_steps {self.checkpoint_steps} must lie in [0, steps={self.steps}]")

    def lr_factor(self, step: int) -> float:
        """Linear warmup to 1, then cosine to min_lr_ratio at the last step."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def saves_at(self) -> list[int]:
        return sorted(set(self.checkpoint_steps) | {self.steps})


@dataclass(frozen=True)
class AdamWTraining:
    """Optimisation settings shared by the language-model and ViT experiments (their config `train` sections):
    AdamW over the role groups, linear warmup then cosine, clipping, evaluation and checkpoint intervals."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float
    beta1: float
    beta2: float
    eps: float
    grad_clip: float
    wd_other: float
    eval_every: int
    checkpoint_every: int  # plus step 0 and the last step; 0: only those

    def schedule(self) -> Schedule:
        return Schedule(steps=self.steps, warmup_steps=self.warmup_steps, min_lr_ratio=self.min_lr_ratio,
                        grad_clip=self.grad_clip, eval_every=self.eval_every,
                        checkpoint_steps=every_n_steps(self.steps, self.checkpoint_every))

    def optimizer(self, model: nn.Module, decays: WeightDecays) -> torch.optim.Optimizer:
        return build_optimizer(model, decays, self.lr, (self.beta1, self.beta2), self.eps)


def every_n_steps(steps: int, interval: int) -> tuple[int, ...]:
    """Checkpoint steps 0, interval, 2·interval, … ≤ steps (only 0 when interval is 0); the last step is always
    saved by the schedule besides these."""
    return tuple(range(0, steps + 1, interval)) if interval else (0,)


def _truncate_metrics(path: Path, after_step: int) -> None:
    """Drop metric lines logged after `after_step` (they belong to work a resume repeats), and a last line cut
    short by a kill in mid-write."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # every complete line ends in a newline: this one was being written when the job died
    kept = [line for line in lines if json.loads(line)["step"] <= after_step]
    path.write_text("".join(kept))


@dataclass(frozen=True)
class TrainResult:
    evaluation: dict[str, float]  # the task's evaluation after the last step
    steps_per_second: float | None  # of this session, None when too few steps were timed


def train(model: nn.Module, optimizer: torch.optim.Optimizer, task: Task, schedule: Schedule,
          checkpoint_dir: str | Path, metrics_path: str | Path, progress: bool = True,
          compute: Compute | None = None, model_config: dict | None = None) -> TrainResult:
    """Train to `schedule.steps`, resuming from the latest checkpoint. Only the main process writes files;
    `model_config` is written as config.json beside each checkpoint of a model that does not write its own.

    Raises:
        Preempted: on SIGTERM/SIGUSR1, after checkpointing the current step.
        FloatingPointError: on a non-finite training loss.
    """
    compute = compute or Compute()
    placement = place(compute)
    model.to(placement.device)  # in place: the optimizer keeps its parameters
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)
    metrics_path = Path(metrics_path)
    start = 0
    if checkpoints := list_checkpoints(checkpoint_dir):
        start = load_checkpoint(checkpoints[-1], model, optimizer, scheduler)["step"]
    if placement.is_main:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        if start:
            _truncate_metrics(metrics_path, start)
        elif metrics_path.exists():
            metrics_path.unlink()
    forward = _forward_module(model, placement, compute)

    saves = schedule.saves_at()
    model.train()
    with open(metrics_path if placement.is_main else os.devnull, "a", encoding="utf-8") as log, tqdm(
        total=schedule.steps, initial=start, disable=not (progress and placement.is_main), desc="train",
        mininterval=2,
    ) as bar, preemption_signals() as received:

        def record(entry: dict) -> None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

        def checkpoint(step: int) -> None:
            if placement.is_main:
                save_checkpoint(checkpoint_dir, step, model, optimizer, scheduler, model_config)

        if start == 0 and 0 in saves:
            checkpoint(0)
        evaluation: dict[str, float] = {}
        timer = _Throughput(placement, start)
        for step in range(start, schedule.steps):
            with autocast(placement, compute):
                loss = task.loss(forward, move(shard(task.batch(step), placement), placement.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {loss.item()} at step {step}: the run diverged (lower the learning rate or "
                    f"the weight decays); no output was written, earlier checkpoints in {checkpoint_dir} are kept"
                )
            loss.backward()
            clip = schedule.grad_clip if schedule.grad_clip is not None else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            timer.tick(done)
            bar.update()
            if done % schedule.log_every == 0 or done == schedule.steps:
                train_loss = mean_over_processes(loss.item(), placement)
                record({"step": done, "train_loss": train_loss, "lr": lr, "grad_norm": grad_norm.item()})
                bar.set_postfix(loss=f"{train_loss:.3f}")
            if (schedule.eval_every and done % schedule.eval_every == 0) or done == schedule.steps:
                model.eval()
                evaluation = task.evaluate(model)
                model.train()
                record({"step": done, **evaluation})
            if done in saves:
                checkpoint(done)
                if placement.is_main:
                    _prune_unscheduled(checkpoint_dir, saves, done)
            if done < schedule.steps and any_process(bool(received), placement):
                if done not in saves:
                    checkpoint(done)
                wait_for_all(placement)  # torchrun stops every process once one exits: let rank 0 finish writing
                raise Preempted(received[0] if received else signal.SIGTERM, done)
    if not evaluation:  # resumed at the last step: evaluate the restored model
        model.eval()
        evaluation = task.evaluate(model)
    return TrainResult(evaluation, timer.steps_per_second())


def _forward_module(model: nn.Module, placement: Placement, compute: Compute) -> nn.Module:
    """What computes the training loss: the model, wrapped for DDP and compiled as configured (checkpoints and
    evaluation use the plain model)."""
    forward = model
    if placement.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [placement.device.index] if placement.device.type == "cuda" else None
        forward = DistributedDataParallel(model, device_ids=device_ids)
    if compute.compile:
        forward = torch.compile(forward)
    return forward


class _Throughput:
    """Steps per second of this session, after the first TIMED_AFTER steps (allocation, compilation)."""

    def __init__(self, placement: Placement, start: int):
        self.placement, self.first, self.began, self.last, self.ended = placement, start + TIMED_AFTER, None, 0, None

    def tick(self, done: int) -> None:
        if done >= self.first:
            if self.placement.device.type == "cuda":
                torch.cuda.synchronize(self.placement.device)
            now = time.perf_counter()
            if self.began is None:
                self.began = now
            self.last, self.ended = done, now

    def steps_per_second(self) -> float | None:
        if self.began is None or self.last <= self.first:
            return None
        return (self.last - self.first) / (self.ended - self.began)
