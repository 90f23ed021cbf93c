"""Best tracking and early stopping on one monitored metric.

The best value, its step and epoch, and the count of stale epochs stay in
:class:`~liandan.training.loop.TrainState`, not in this callback's state: ``summary.json`` reports
them, ``ModelCheckpoint`` links ``best.safetensors`` from them, and checkpoints written before
callbacks existed resume unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from liandan.registry import register_callback
from liandan.training.callbacks.base import Callback

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@register_callback("early_stopping")
class EarlyStopping(Callback):
    """Track the best value of ``monitor``; stop after ``patience`` epochs without improvement.

    ``monitor`` None: the run's monitor (``train.early_stopping.monitor``, else val.loss, else
    train.loss). ``patience`` None: track the best only, never stop (the default without
    ``train.early_stopping``). ``restore_best`` stays a recipe setting (``liandan.train``
    restores after the run).

    Args:
        monitor: the metric to watch, e.g. val.loss or val.accuracy (None: the run's monitor).
        mode: min for losses and errors, max for scores; auto picks by the metric's name.
        patience: epochs without improvement before stopping (None: track the best, never stop).
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, monitor: str | None = None, mode: Literal["auto", "min", "max"] = "auto",
                 patience: int | None = None, min_delta: float = 0.0) -> None:
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta

    def setup(self, trainer: Trainer) -> None:
        if self.monitor is None:
            self.monitor, self.mode = trainer.monitor, trainer.monitor_mode
        else:  # checked against what this run logs; the summary reports this monitor's best
            self.monitor, self.mode = trainer.resolve_monitor(self.monitor, self.mode, where="early_stopping.monitor")
            trainer.monitor, trainer.monitor_mode = self.monitor, self.mode

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, dict[str, float]]) -> None:
        st = trainer.state
        split, _, key = self.monitor.partition(".")
        value = metrics[split].get(key)
        best = st.best_value
        improved = value is not None and value == value and (  # a NaN never improves
            best is None or (value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta))
        if improved:  # ModelCheckpoint links best.safetensors to this epoch's checkpoint
            st.best_value, st.best_step, st.best_epoch, st.stale_epochs = float(value), st.step, st.epoch, 0
        else:
            st.stale_epochs += 1
        if self.patience is not None and st.stale_epochs > self.patience:
            trainer.request_stop("stopped_early", f"{self.monitor} did not improve for {st.stale_epochs} epochs")
