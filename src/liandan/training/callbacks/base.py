"""The callback base class: the trainer's extension point.

Everything the loop does besides forward/backward/step — logging, checkpoints, early stopping,
the progress bar, signal handling, the doctor's probes — is a callback, so a user swaps any of
them. A hook is called only on the callbacks that override it (the trainer indexes them once
per fit), so an unused hook costs nothing per step. Hooks see tensors, not Python floats: a
callback decides itself when a host sync is worth it.

A callback with state to resume returns it from :meth:`Callback.state_dict`; the checkpoint
stores it under :attr:`Callback.state_key` and ``liandan resume`` hands it back through
:meth:`Callback.load_state_dict`. Checkpoints are loaded with ``torch.load(weights_only=True)``,
so a state holds only tensors, numbers, strings, ``None`` and lists/tuples/dicts of them.

Stopping: call ``trainer.request_stop(status, reason)`` (``trainer.should_stop`` tells whether a
stop is pending); the loop ends at the next step or epoch boundary. Never write
``trainer.status`` from a callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from liandan.training.loop import Trainer

# Every hook, in the order the loop first reaches it.
HOOKS = ("setup", "on_fit_start", "on_batch_start", "on_after_backward", "on_step_end", "on_log",
         "on_epoch_end", "on_epoch_complete", "on_save_checkpoint", "on_train_end", "teardown", "on_fit_end",
         "on_run_end")


class Callback:
    """Every hook is optional; override the ones you need.

    ``reads_grad_norm``: set it False on a callback whose ``on_step_end`` ignores ``grad_norm``;
    when no callback reads it and nothing clips, the trainer computes the norm on log steps only
    and passes ``None`` on the others (the non-finite guard then checks the gradients directly).

    Order within one step: ``on_batch_start`` (each micro-batch) → forward/backward →
    ``on_after_backward`` (gradients present, unscaled, before clipping) → optimizer step →
    ``on_log`` (on log steps) → ``on_step_end``. At an epoch's end: ``on_log`` (a train and a
    val row) → ``on_epoch_end`` (the epoch's metrics; ``trainer.state.epoch`` is still the
    finished epoch) → ``on_epoch_complete`` (the counters have moved to the next epoch and the
    stop decision is taken: what a checkpoint taken now resumes from).
    """

    reads_grad_norm: bool = True

    def setup(self, trainer: Trainer) -> None:
        """The trainer is built (model, optimizer, task); check options against it. Errors here
        are the user's: they surface before training starts."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step (also of a resumed run: ``trainer.state`` is restored)."""

    def on_batch_start(self, trainer: Trainer, x: Any, y: Any) -> None:
        """Each micro-batch, already on the device, before its forward pass."""

    def on_after_backward(self, trainer: Trainer) -> None:
        """Gradients are present (unscaled under fp16), before clipping and the step."""

    def on_step_end(self, trainer: Trainer, loss: torch.Tensor, grad_norm: torch.Tensor | None,
                    applied: bool) -> None:
        """After an optimizer step; ``applied`` is False when the non-finite guard skipped it.
        ``grad_norm`` is None on non-log steps of a run where no callback reads it."""

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """A metrics row (rank 0 only): ``split`` ``step`` every ``train.log_every`` steps, then
        ``train`` and ``val`` at each epoch's end. The row holds Python numbers."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, dict[str, float]]) -> None:
        """The epoch's metrics per split (``train``, ``val``)."""

    def on_epoch_complete(self, trainer: Trainer) -> None:
        """The epoch is over: counters point at the next epoch, the stop decision is taken."""

    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        """A checkpoint is being taken (``checkpoint`` is its state, before it is written)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """The loop ended without an exception (``trainer.status`` is final), before teardown."""

    def teardown(self, trainer: Trainer) -> None:
        """Always runs when ``fit`` ends, also on an exception: close files, restore handlers."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After teardown, when ``fit`` returns normally; ``summary.json`` is written after this."""

    def on_run_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """``liandan.train``/``resume`` only, rank 0: the run is over, its final evaluation and
        ``summary.json`` written. Post-run work goes here (the doctor's auto-repair retrains in
        fresh runs): nothing done here can change the run's results."""

    # --- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue exactly (empty: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint (two of one class get ``#2``, ...)."""
        return type(self).__qualname__

    def implements(self, hook: str) -> bool:
        """Whether the trainer calls ``hook`` on this callback: the class (or the instance)
        overrides it. A callback may narrow this per instance to keep a hook off the hot path."""
        return hook in vars(self) or getattr(type(self), hook) is not getattr(Callback, hook)


def index_hooks(callbacks: list[Callback]) -> dict[str, list[Any]]:
    """Per hook, the bound methods of the callbacks that implement it, in callback order."""
    return {h: [getattr(cb, h) for cb in callbacks if cb.implements(h)] for h in HOOKS}


def keyed(callbacks: list[Callback]) -> dict[str, Callback]:
    """The callbacks by checkpoint key; repeats of one key get ``#2``, ``#3`` in list order."""
    out: dict[str, Callback] = {}
    for cb in callbacks:
        key, n = cb.state_key, 1
        while key in out:
            n += 1
            key = f"{cb.state_key}#{n}"
        out[key] = cb
    return out
