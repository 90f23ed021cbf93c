"""TensorBoard event files under RUN/tb/ (the ``[tb]`` extra; without it this logs nothing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from liandan.registry import register_callback
from liandan.training.callbacks.base import Callback

if TYPE_CHECKING:
    from liandan.training.loop import Trainer

_NOT_SCALARS = ("epoch", "step", "split", "lr", "wall_s")


@register_callback("tensorboard")
class TensorBoardLogger(Callback):
    """Log step rows (loss, lr, grad_norm) and each epoch's metrics per split to RUN/tb/.

    Args:
        subdir: the event files' folder inside the run directory.
    """

    def __init__(self, subdir: str = "tb") -> None:
        self.subdir = subdir
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is the [tb] extra
            return
        # purge_step drops events a killed run logged after its last checkpoint.
        self.writer = SummaryWriter(str(trainer.dir / self.subdir), purge_step=trainer.state.step or None)

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        split, step = row["split"], row["step"]
        if split == "step":
            for k in ("loss", "lr", "grad_norm"):
                self.writer.add_scalar(f"step/{k}", row[k], step)
        else:
            for k, v in row.items():
                if k not in _NOT_SCALARS:
                    self.writer.add_scalar(f"{split}/{k}", v, step)

    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        if self.writer is not None:  # events up to the checkpoint are on disk with it
            self.writer.flush()

    def teardown(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
