"""What the training loop does at each step: how many steps, the learning-rate schedule, clipping, evaluation and
checkpoint steps, and the batch geometry (global batch, micro-batches).

The global batch is what a run optimises, whatever the hardware: `batch_size` examples per optimizer step, split
evenly over the data-parallel processes, each of which runs its share in micro-batches of `micro_batch_size` and
accumulates their gradients before the one optimizer step. Micro-batches only bound memory: one or many, the step's
gradient is the mean over the same global batch (to float rounding).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from wdrank.batches import split_problem


@dataclass(frozen=True)
class Schedule:
    steps: int
    batch_size: int  # examples per optimizer step, over all processes
    micro_batch_size: int | None = None  # examples per forward/backward pass on one process; None: all of its share
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # cosine decays from lr to min_lr_ratio * lr
    grad_clip: float | None = 1.0
    eval_every: int = 0  # 0: evaluate at the end only
    log_every: int = 10  # also how often the loop synchronises with a GPU (loss, divergence, speed)
    checkpoint_steps: tuple[int, ...] = ()  # the final step is always checkpointed

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.batch_size < 1:
            raise ValueError(f"invalid schedule {self}: need steps >= 1, batch_size >= 1, warmup_steps >= 0, "
                             "0 <= min_lr_ratio <= 1")
        if any(not 0 <= s <= self.steps for s in self.checkpoint_steps):
            raise ValueError(f"checkpoint_steps {self.checkpoint_steps} must lie in [0, steps={self.steps}]")

    def lr_factor(self, step: int) -> float:
        """Linear warmup to 1, then cosine to min_lr_ratio at the last step."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def cumulative_lr(self, lr: float) -> list[float]:
        """Σ_{s < step} lr · lr_factor(s) for step = 0 .. steps: times λ, how far AdamW's decoupled decay, a factor
        (1 − η_s λ) per step, has shrunk the weights by then (the decay clock of the LoRA figures)."""
        return list(itertools.accumulate((lr * self.lr_factor(s) for s in range(self.steps)), initial=0.0))

    def saves_at(self) -> list[int]:
        return sorted(set(self.checkpoint_steps) | {self.steps})

    def micro_batches(self, rank: int, world_size: int) -> list[slice]:
        """The rows of the global batch that process `rank` of `world_size` computes, one slice per micro-batch.

        Raises:
            ValueError: if the processes or micro-batches do not divide the batch evenly (every micro-batch must
                weigh the same in the mean gradient).
        """
        problem = split_problem(self.batch_size, world_size, self.micro_batch_size)
        if problem is not None:
            key, allowed = problem
            raise ValueError(f"train.{key} {getattr(self, key)}: allowed {allowed}")
        share = self.batch_size // world_size
        micro = self.micro_batch_size or share
        first = rank * share
        return [slice(start, start + micro) for start in range(first, first + share, micro)]


def every_n_steps(steps: int, interval: int) -> tuple[int, ...]:
    """Checkpoint steps 0, interval, 2·interval, … ≤ steps (only 0 when interval is 0); the last step is always
    saved by the schedule besides these."""
    return tuple(range(0, steps + 1, interval)) if interval else (0,)
