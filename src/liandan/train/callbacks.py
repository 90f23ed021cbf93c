"""Hooks into the training loop (the doctor's probes are callbacks).

Every method is optional; ``trainer`` is the running :class:`~liandan.train.loop.Trainer`
(model, optimizer, state, info, log). Hooks see tensors, not Python floats, so a callback
decides itself when a host sync is worth it.
"""

from __future__ import annotations

from typing import Any


class Callback:
    def on_fit_start(self, trainer: Any) -> None: ...
    def on_batch_start(self, trainer: Any, x: Any, y: Any) -> None: ...
    def on_after_backward(self, trainer: Any) -> None: ...  # gradients present, before clipping
    def on_step_end(self, trainer: Any, loss: Any, grad_norm: Any, applied: bool) -> None: ...
    def on_epoch_end(self, trainer: Any, metrics: dict[str, dict[str, float]]) -> None: ...
    def on_fit_end(self, trainer: Any) -> None: ...
