"""Cooperative cancellation of a tool call: the cancel event of the current call and the training callback.

A tool runs synchronously in a worker thread, which Python cannot kill. Each cancellable call gets a
:class:`threading.Event` held in the context variable :data:`CANCEL` (the worker thread runs in a copy
of the caller's context); the server sets it when the call is cancelled or times out
(:mod:`liandan.agents.runner`). Long work polls it: the training tools append
:func:`cancel_callbacks` to ``liandan.train``'s callbacks, whose :class:`StopOnCancel` asks the trainer to
stop exactly as SIGINT does (finish the step, write a checkpoint, status ``interrupted``;
``liandan resume`` continues the run). Short tools simply finish.

Light on purpose (no ``anyio``, no torch): :mod:`liandan.agents.tools` imports it.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from liandan.training.callbacks import Callback

CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("liandan_agents_cancel",
                                                                                default=None)


@contextlib.contextmanager
def cancel_scope(event: threading.Event | None = None) -> Iterator[threading.Event]:
    """Make ``event`` (a new one by default) the cancel event of the code run inside (this thread's context)."""
    event = event if event is not None else threading.Event()
    token = CANCEL.set(event)
    try:
        yield event
    finally:
        CANCEL.reset(token)


def cancel_requested() -> bool:
    """Whether the current tool call was cancelled or timed out."""
    event = CANCEL.get()
    return event is not None and event.is_set()


class StopOnCancel(Callback):
    """Asks the trainer to stop at the next step once ``event`` is set, through the same flag as SIGINT
    (the loop finishes the step, checkpoints and ends with status ``interrupted``)."""

    REASON = "cancelled: the tool call was cancelled or timed out"
    reads_grad_norm = False

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def _check(self, trainer: Any) -> None:
        if self.event.is_set() and not getattr(trainer, "_stop_signal", None):
            trainer._stop_signal = "cancel"

    def on_fit_start(self, trainer: Any) -> None:
        self._check(trainer)

    def on_batch_start(self, trainer: Any, x: Any, y: Any) -> None:
        self._check(trainer)

    def on_step_end(self, trainer: Any, loss: Any, grad_norm: Any, applied: bool) -> None:
        self._check(trainer)

    def on_fit_end(self, trainer: Any) -> None:
        if self.event.is_set() and trainer.status == "interrupted":
            trainer.stop_reason = self.REASON  # instead of "received cancel"; summary.json is written after this


def cancel_callbacks() -> list[Callback]:
    """What a training tool appends to ``callbacks=``: a :class:`StopOnCancel` inside a cancellable call, else []."""
    event = CANCEL.get()
    return [StopOnCancel(event)] if event is not None else []
