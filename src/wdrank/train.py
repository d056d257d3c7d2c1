"""The one training loop of every experiment: schedule, clipping, evaluation, checkpoints, exact resume.

A task supplies batches as a pure function of the step (so a resumed run sees the same data as an
uninterrupted one), its loss, and its evaluation. The loop restarts from the latest complete checkpoint in
`checkpoint_dir`, logs metrics as JSON lines, and stops with a clear error on a non-finite loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from wdrank.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint


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


def train(model: nn.Module, optimizer: torch.optim.Optimizer, task: Task, schedule: Schedule,
          checkpoint_dir: str | Path, metrics_path: str | Path, progress: bool = True) -> dict[str, float]:
    """Train to `schedule.steps`, resuming from the latest checkpoint; returns the final evaluation."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)
    metrics_path = Path(metrics_path)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    start = 0
    if checkpoints := list_checkpoints(checkpoint_dir):
        start = load_checkpoint(checkpoints[-1], model, optimizer, scheduler)["step"]
        _truncate_metrics(metrics_path, start)
    elif metrics_path.exists():
        metrics_path.unlink()

    saves = schedule.saves_at()
    model.train()
    with open(metrics_path, "a", encoding="utf-8") as log, tqdm(
        total=schedule.steps, initial=start, disable=not progress, desc="train", mininterval=2
    ) as bar:

        def record(entry: dict) -> None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

        if start == 0 and 0 in saves:
            save_checkpoint(checkpoint_dir, 0, model, optimizer, scheduler)
        evaluation: dict[str, float] = {}
        for step in range(start, schedule.steps):
            loss = task.loss(model, task.batch(step))
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
            bar.update()
            if done % schedule.log_every == 0 or done == schedule.steps:
                record({"step": done, "train_loss": loss.item(), "lr": lr, "grad_norm": grad_norm.item()})
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if (schedule.eval_every and done % schedule.eval_every == 0) or done == schedule.steps:
                model.eval()
                evaluation = task.evaluate(model)
                model.train()
                record({"step": done, **evaluation})
            if done in saves:
                save_checkpoint(checkpoint_dir, done, model, optimizer, scheduler)
    if not evaluation:  # resumed at the last step: evaluate the restored model
        model.eval()
        evaluation = task.evaluate(model)
    return evaluation
