"""How a training step's global batch is split, and how large an evaluation batch is: one home for both rules,
torch-free, so that config validation (before any job starts) and the training loop apply the same ones.

The global batch (`train.batch_size`) is split evenly over the data-parallel processes, and each process's share
into micro-batches of `train.micro_batch_size` (None: the whole share at once); every micro-batch must weigh the same
in the mean gradient, so both splits must be exact.
"""

from __future__ import annotations


def split_problem(batch_size: int, processes: int, micro_batch_size: int | None) -> tuple[str, str] | None:
    """Where a global batch cannot be split evenly: (the train key at fault, what it allows); None if it can."""
    if batch_size % processes:
        return "batch_size", f"a multiple of the {processes} processes"
    share = batch_size // processes
    if micro_batch_size and share % micro_batch_size:
        plural = "es" if processes > 1 else ""
        return "micro_batch_size", (f"a divisor of the per-process batch {share} (train.batch_size {batch_size} "
                                    f"over {processes} process{plural})")
    return None


def evaluation_batch(batch_size: int, micro_batch_size: int | None) -> int:
    """Examples per forward pass when evaluating: a training micro-batch (or the whole batch), so that evaluation
    never needs more memory than a training step."""
    return micro_batch_size or batch_size
