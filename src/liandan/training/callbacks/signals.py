"""SIGINT/SIGTERM: finish the step, checkpoint, end with status ``interrupted`` (a second one aborts)."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

from liandan.registry import register_callback
from liandan.training.callbacks.base import Callback

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@register_callback("signal_handler")
class SignalHandler(Callback):
    """Turn SIGINT and SIGTERM into ``trainer.interrupt``; the previous handlers come back after the run."""

    def __init__(self) -> None:
        self._old: dict[signal.Signals, Any] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():  # only the main thread may
            return

        def handle(signum: int, frame: Any) -> None:  # noqa: ARG001
            if trainer.interrupt_requested:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            name = signal.Signals(signum).name
            trainer.interrupt(name)
            trainer.echo(f"{name}: finishing this step and writing a checkpoint (again to abort)")

        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, handle)

    def teardown(self, trainer: Trainer) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
