"""The one training loop of every experiment: micro-batches, clipping, evaluation, checkpoints, exact resume.

A task supplies any rows of a step's global batch as a pure function of (step, rows), so that a resumed run, a
different number of processes or a different micro-batch size all see the same data. The loop restarts from the
latest complete checkpoint in `checkpoint_dir`, logs metrics as JSON lines beside the checkpoints (so that the log
outlives every restart, `wdrank.metrics_log`), and stops with a clear error on a non-finite loss. It runs where
`wdrank.device` places it (CPU, a GPU, or one of several DDP processes).

On a GPU the loop never waits for the device in an ordinary step: the loss, the divergence check and the speed
are read at log steps (every `Schedule.log_every`), at evaluations and before checkpoints. A diverged run is
therefore stopped at the next log step, naming the first step whose loss was not finite; nothing it computed after
that is ever checkpointed.

SIGTERM or SIGUSR1 (what SLURM sends on preemption or before a time limit) make it checkpoint the step it is on,
always between optimizer steps, and raise `Preempted`; the rerun resumes from there.
"""

from __future__ import annotations

import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from wdrank.checkpoint import discard_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from wdrank.device import (
    Compute, Placement, any_process, autocast, mean_over_processes, move, place, synchronize, wait_for_all,
)
from wdrank.metrics_log import MetricsLog
from wdrank.optim import select_kernels
from wdrank.preemption import Preempted, preemption_signals
from wdrank.schedule import Schedule
from wdrank.tracking import TensorBoardTracker
from wdrank.trajectory import checkpoint_step

TIMED_AFTER = 3  # steps of a session left out of the throughput (allocation, compilation)


class Task(Protocol):
    def batch(self, step: int, rows: slice) -> Any:
        """Rows `rows` of the global batch of optimizer step `step` (a tensor or a tuple of tensors)."""

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The mean loss over the examples of `batch`."""

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    # Optional: `training_module(model) -> nn.Module`, what the loop compiles, wraps for DDP and passes to `loss` in
    # place of the model (the language models: model and loss in one module, `wdrank.models.next_token`).


@dataclass(frozen=True)
class TrainResult:
    evaluation: dict[str, float]  # the task's evaluation after the last step
    steps_per_second: float | None  # of this session, None when too few steps were timed


def train(model: nn.Module, optimizer: torch.optim.Optimizer, task: Task, schedule: Schedule,
          checkpoint_dir: str | Path, metrics_path: str | Path, progress: bool = True,
          compute: Compute | None = None, model_config: dict | None = None,
          tracker: TensorBoardTracker | None = None) -> TrainResult:
    """Train to `schedule.steps`, resuming from the latest checkpoint. Only the main process writes files: the
    metrics log grows in `checkpoint_dir` and is copied to `metrics_path` at the end (each record also goes to
    `tracker`, when tracking); `model_config` is written as config.json beside each checkpoint of a model that does
    not write its own.

    Raises:
        Preempted: on SIGTERM/SIGUSR1, after checkpointing the current step.
        FloatingPointError: on a non-finite training loss.
        CheckpointError: when a checkpoint cannot be written (the earlier ones are kept).
    """
    compute = compute or Compute()
    placement = place(compute)
    micro_batches = schedule.micro_batches(placement.rank, placement.world_size)
    model.to(placement.device)  # in place: the optimizer keeps its parameters
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)
    start = 0
    if checkpoints := list_checkpoints(checkpoint_dir):
        start = load_checkpoint(checkpoints[-1], model, optimizer, scheduler)["step"]
        if placement.is_main:
            print(f"resuming from {checkpoints[-1]} (step {start})", flush=True)
    select_kernels(optimizer, placement.device)
    log = MetricsLog(checkpoint_dir)
    tracker = tracker if placement.is_main else None
    if placement.is_main:
        log.resume_from(start)
    if tracker is not None:
        tracker.resume_from(log.records())
    forward, ddp = _forward_module(_training_module(task, model), placement, compute)

    saves = schedule.saves_at()
    model.train()
    with log if placement.is_main else nullcontext(), tqdm(
        total=schedule.steps, initial=start, disable=not (progress and placement.is_main), desc="train",
        mininterval=2,
    ) as bar, preemption_signals() as received:

        def record(entry: dict) -> None:
            if placement.is_main:
                log.append(entry)
            if tracker is not None:
                tracker.record(entry)

        def checkpoint(step: int) -> None:
            divergence.check()  # a diverged model is never saved
            if placement.is_main:
                save_checkpoint(checkpoint_dir, step, model, optimizer, scheduler, model_config)

        divergence = _DivergenceWatch(placement.device, checkpoint_dir)
        if start == 0 and 0 in saves and not checkpoints:
            checkpoint(0)
        evaluation: dict[str, float] = {}
        clock = _Clock(placement, start)
        for step in range(start, schedule.steps):
            loss = _accumulate_gradients(task, forward, ddp, step, micro_batches, placement, compute)
            divergence.observe(step, loss)
            clip = schedule.grad_clip if schedule.grad_clip is not None else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            bar.update()
            logged = done % schedule.log_every == 0 or done == schedule.steps
            if logged or done == clock.first:
                clock.mark(done)
            if logged:
                divergence.check()
                train_loss = mean_over_processes(loss.item(), placement)
                record({"step": done, "train_loss": train_loss, "lr": lr, "grad_norm": grad_norm.item()})
                bar.set_postfix(loss=f"{train_loss:.3f}")
            if (schedule.eval_every and done % schedule.eval_every == 0) or done == schedule.steps:
                divergence.check()
                model.eval()
                evaluation = task.evaluate(model)
                model.train()
                record({"step": done, **evaluation})
            if done in saves:
                checkpoint(done)
                if placement.is_main:
                    _prune_unscheduled(checkpoint_dir, saves, done)
            if done < schedule.steps and _stop_requested(received, placement, logged):
                if done not in saves:
                    checkpoint(done)
                wait_for_all(placement)  # torchrun stops every process once one exits: let rank 0 finish writing
                raise Preempted(received[0] if received else signal.SIGTERM, done)
    if not evaluation:  # resumed at the last step: evaluate the restored model
        model.eval()
        evaluation = task.evaluate(model)
    if placement.is_main:
        log.publish(metrics_path)
    if tracker is not None:
        tracker.finish(evaluation)
    return TrainResult(evaluation, clock.steps_per_second())


def _accumulate_gradients(task: Task, forward: nn.Module, ddp: nn.Module | None, step: int,
                          micro_batches: list[slice], placement: Placement, compute: Compute) -> torch.Tensor:
    """Forward and backward over this process's micro-batches of one step; returns their mean loss (on the device).

    Each micro-batch loss is a mean over equally many examples, so weighting each by 1/count makes the accumulated
    gradient the mean over the process's share; DDP then averages the shares, all-reducing once, after the last
    micro-batch."""
    count = len(micro_batches)
    total = None
    for index, rows in enumerate(micro_batches):
        sync = nullcontext() if ddp is None or index == count - 1 else ddp.no_sync()
        with sync:
            with autocast(placement, compute):
                loss = task.loss(forward, move(task.batch(step, rows), placement.device))
            (loss / count if count > 1 else loss).backward()
        total = loss.detach() if total is None else total + loss.detach()
    return total / count if count > 1 else total


def _stop_requested(received: list[int], placement: Placement, logged: bool) -> bool:
    """Whether to checkpoint and stop now: a signal arrived here (checked every step: no device involved) or, under
    DDP, on any process (agreed at log steps only, where the processes synchronise anyway)."""
    if not placement.distributed:
        return bool(received)
    return logged and any_process(bool(received), placement)


class _DivergenceWatch:
    """The first step whose training loss was not finite, kept on the device; `check` reads it (a host sync)."""

    def __init__(self, device: torch.device, checkpoint_dir: str | Path):
        self.first = torch.full((), -1, dtype=torch.int64, device=device)
        self.checkpoint_dir = checkpoint_dir

    def observe(self, step: int, loss: torch.Tensor) -> None:
        diverged = (self.first < 0) & ~torch.isfinite(loss)
        self.first = torch.where(diverged, self.first.new_full((), step), self.first)

    def check(self) -> None:
        step = int(self.first.item())
        if step >= 0:
            raise FloatingPointError(
                f"training loss is not finite (nan or inf) at step {step}: the run diverged (lower the learning rate "
                f"or the weight decays); no output was written, earlier checkpoints in {self.checkpoint_dir} are kept"
            )


class _Clock:
    """Steps per second of this session, after its first TIMED_AFTER steps (allocation, compilation), timed only
    where the loop synchronises with the device anyway."""

    def __init__(self, placement: Placement, start: int):
        self.placement, self.first = placement, start + TIMED_AFTER
        self.marks: list[tuple[int, float]] = []

    def mark(self, done: int) -> None:
        if done >= self.first:
            synchronize(self.placement)
            self.marks.append((done, time.perf_counter()))

    def steps_per_second(self) -> float | None:
        if len(self.marks) < 2:
            return None
        (first_step, began), (last_step, ended) = self.marks[0], self.marks[-1]
        return (last_step - first_step) / (ended - began)


def _training_module(task: Task, model: nn.Module) -> nn.Module:
    """The module whose forward the loop differentiates: the task's `training_module(model)` where it has one."""
    return task.training_module(model) if hasattr(task, "training_module") else model


def _forward_module(module: nn.Module, placement: Placement, compute: Compute) -> tuple[nn.Module, nn.Module | None]:
    """What computes the training loss — the training module, wrapped for DDP and compiled as configured — and the DDP
    wrapper (for `no_sync` between micro-batches), if any. Checkpoints and evaluation use the plain model."""
    forward, ddp = module, None
    if placement.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [placement.device.index] if placement.device.type == "cuda" else None
        forward = ddp = DistributedDataParallel(module, device_ids=device_ids)
    if compute.compile:
        forward = torch.compile(forward)
    return forward, ddp


def _prune_unscheduled(directory: str | Path, saves: list[int], before: int) -> None:
    """Remove checkpoints written on preemption once a scheduled one after them exists (they are resume points,
    not results: spectra are measured at scheduled steps only)."""
    for path in list_checkpoints(directory):
        if checkpoint_step(path) < before and checkpoint_step(path) not in saves:
            discard_checkpoint(path)
