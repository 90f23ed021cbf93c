"""metrics.csv: every row the trainer logs, cut back on resume to what the checkpoint saw."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from liandan.registry import register_callback
from liandan.training.callbacks.base import Callback
from liandan.training.rundir import MetricsLog

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@register_callback("csv_logger")
class CSVLogger(Callback):
    """Write every logged row to RUN/metrics.csv (a fixed header: the task's metrics as columns).

    Args:
        filename: the CSV file's name inside the run directory.
    """

    def __init__(self, filename: str = "metrics.csv") -> None:
        self.filename = filename
        self.log: MetricsLog | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if not trainer.is_main:  # only rank 0 writes the run directory
            return
        self.log = MetricsLog(trainer.dir / self.filename, trainer.metrics)
        if trainer.resumed:  # drop the rows a killed run wrote after its last checkpoint
            self.log.truncate(trainer.state.csv_rows)
        trainer.state.csv_rows = self.log.rows

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(row)
            # The row count lives in TrainState (its checkpointed counters, as before callbacks):
            # a checkpoint taken at any moment records how many rows belong to it.
            trainer.state.csv_rows = self.log.rows

    def teardown(self, trainer: Trainer) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
