"""Preemption: SIGTERM (what SLURM sends a job it preempts, and the workflow asks for before a time limit) or SIGUSR1
(a common time-limit warning elsewhere) is recorded instead of killing the process, so that training can checkpoint
the step it is on and stop with `Preempted`.

Free of torch, so that the command line can catch `Preempted` without importing it up front.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Training stopped on a signal after checkpointing `step`; exit non-zero so that the scheduler requeues."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"received {signal.Signals(signum).name}: checkpointed step {step} and stopped; "
                         "rerun to resume")
        self.signum, self.step = signum, step


_received: list[int] = []  # the signals recorded since the outermost `preemption_signals` began
_depth = 0


@contextmanager
def preemption_signals() -> Iterator[list[int]]:
    """Record SIGTERM/SIGUSR1 instead of dying on them (the list holds the signals received). Nested uses share one
    record, so that the training command can start recording before its slow imports and data loading, and the loop
    inside it still sees a signal that arrived then."""
    global _depth
    previous = {}
    if _depth == 0:
        previous = {sig: signal.signal(sig, lambda signum, frame: _received.append(signum))
                    for sig in PREEMPTION_SIGNALS}
    _depth += 1
    try:
        yield _received
    finally:
        _depth -= 1
        if _depth == 0:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _received.clear()
