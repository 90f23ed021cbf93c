"""Checkpoints: every N steps, at each epoch's end, and where an interrupted run stopped.

A checkpoint is the trainer's whole state (:meth:`~liandan.training.loop.Trainer.checkpoint_state`:
counters, optimizer, schedule, scaler, RNG, tallies, task and callback states) plus the weights,
written on a background thread, atomically (:mod:`liandan.training.checkpoint`). ``last.safetensors``
always points at the newest weights, ``best.safetensors`` at those of the best epoch so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from liandan.registry import register_callback
from liandan.training import checkpoint as ck
from liandan.training.callbacks.base import Callback

if TYPE_CHECKING:
    import torch

    from liandan.training.loop import Trainer


@register_callback("model_checkpoint")
class ModelCheckpoint(Callback):
    """Checkpoint RUN/checkpoints/ every ``every`` steps (0: epoch ends only), keeping ``keep``.

    Args:
        every: optimizer steps between checkpoints (0: at each epoch's end only).
        keep: how many step checkpoints to keep (older ones are deleted; last and best stay linked).
    """

    reads_grad_norm = False

    def __init__(self, every: int = 0, keep: int = 2) -> None:
        self.every, self.keep = every, keep
        self.writer = ck.CheckpointWriter()

    def implements(self, hook: str) -> bool:
        if hook == "on_step_end" and not self.every:  # no periodic saves: off the per-step path
            return False
        return super().implements(hook)

    def on_step_end(self, trainer: Trainer, loss: torch.Tensor, grad_norm: torch.Tensor, applied: bool) -> None:
        st = trainer.state
        # Not when the run is about to stop (it checkpoints itself if it must), and not inside a
        # streak of skipped steps: the newest checkpoint stays a good one.
        if st.step % self.every == 0 and st.bad_steps == 0 and not trainer.should_stop:
            self.save(trainer)

    def on_epoch_complete(self, trainer: Trainer) -> None:
        st = trainer.state
        self.save(trainer, best=st.best_epoch == st.epoch - 1)  # the epoch just finished is the best

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.status == "interrupted":  # `liandan resume` continues from this very step
            self.save(trainer)

    def teardown(self, trainer: Trainer) -> None:
        self.writer.wait()  # the last write lands before fit returns (and its error is raised)

    def save(self, trainer: Trainer, best: bool = False) -> Path | None:
        """Snapshot now; write on the checkpoint thread (after the previous write finishes).
        ``best``: these weights are also the best so far."""
        if not trainer.is_main:
            return None
        state = trainer.checkpoint_state()
        weights = ck.state_dict_cpu(trainer.model)
        ckpt_dir = trainer.dir / "checkpoints"
        links = (ckpt_dir / "last.safetensors", *((ckpt_dir / "best.safetensors",) if best else ()))
        step, keep = trainer.state.step, self.keep
        self.writer.submit(lambda: ck.save_checkpoint(ckpt_dir, step, weights, state, keep, links))
        return ckpt_dir / f"{ck.STEP_PREFIX}{step:08d}"
