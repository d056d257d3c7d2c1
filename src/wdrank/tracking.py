"""Offline experiment tracking: a run's metrics as TensorBoard event files, written live, with its sweep point as
hyperparameters, so that `tensorboard --logdir results/tensorboard` compares the grid (the HParams tab too).

Opt-in (config key `tracking: tensorboard`; needs the `tensorboard` package: `pip install -e ".[tracking]"`).
Nothing goes online: event files are plain files, written on the compute node and read wherever TensorBoard runs.
Every record of the metrics log (`wdrank.metrics_log`) becomes one scalar per key at its step, under the same name
(train_loss, lr, grad_norm, validation_loss, ...). A resumed run starts its events afresh from the records its
metrics log kept (the log drops those after the checkpoint it resumed from): TensorBoard shows each step once, and a
run that finished before tracking was switched on gets its whole curve when it is rerun.
"""

from __future__ import annotations

from pathlib import Path


def require_tensorboard() -> None:
    """Fail before any work where tracking is asked for but TensorBoard's writer cannot be imported."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise RuntimeError("config key 'tracking' is 'tensorboard', but the tensorboard package is not installed: "
                           "pip install -e \".[tracking]\" (or set tracking: none)") from error


class TensorBoardTracker:
    """Event files of one run in `log_dir`; `hparams` (sweep point and main settings) label it in the HParams tab."""

    def __init__(self, log_dir: str | Path, hparams: dict[str, float | int | str | bool]):
        require_tensorboard()
        self.log_dir = Path(log_dir)
        self.hparams = hparams
        self._writer = None

    def resume_from(self, records: list[dict[str, float]]) -> None:
        """Open the writer, purge every event written before (a killed session's, or a finished run's), and write
        `records`: what the metrics log holds up to the checkpoint resumed from."""
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.log_dir), purge_step=0)
        for record in records:
            self.record(record)

    def record(self, entry: dict[str, float]) -> None:
        """One scalar per key of a metrics-log record, at its step; flushed at once, so that a killed run loses
        nothing it logged (records come every few steps: the cost is nil)."""
        for key, value in entry.items():
            if key != "step":
                self._writer.add_scalar(key, value, entry["step"])
        self._writer.flush()

    def finish(self, evaluation: dict[str, float]) -> None:
        """Write the hyperparameters, with the final evaluation as the metrics they are compared by, and close."""
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(self.hparams, evaluation):
            self._writer.file_writer.add_summary(summary)
        self._writer.close()
