"""The progress bar (a terminal only) and the one line per epoch every run prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from liandan.registry import register_callback
from liandan.training.callbacks.base import Callback
from liandan.training.progress import Progress

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@register_callback("progress_bar")
class ProgressBar(Callback):
    """A rich bar on a terminal, updated on log steps; an epoch line (loss and the first metric per split)."""

    def __init__(self) -> None:
        self.bar: Progress | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        on = trainer.is_main and trainer.echo is not None and not trainer.quiet
        self.bar = Progress(trainer.total_steps, enabled=on)
        self.bar.update(trainer.state.step, "")

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if row["split"] == "step" and self.bar is not None:
            self.bar.update(row["step"], f"epoch {row['epoch'] + 1} loss {row['loss']:.4f}")

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, dict[str, float]]) -> None:
        if trainer.is_main and self.bar is not None:
            self.bar.print(epoch_line(trainer, metrics), trainer.echo)

    def teardown(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


def epoch_line(trainer: Trainer, metrics: dict[str, dict[str, float]]) -> str:
    """``epoch 3/20  train.loss=… train.accuracy=…  val.loss=… val.accuracy=…``"""
    parts = [f"epoch {trainer.state.epoch + 1}/{trainer.cfg.epochs}"]
    train = metrics.get("train", {})
    names = trainer.metrics
    for split, m in metrics.items():
        # the loss, the first metric, and those only evaluation computes (zero-shot, generated captions)
        keys = ["loss", *names[:1], *(k for k in names[1:] if k not in train)]
        parts.append(" ".join(f"{split}.{k}={m[k]:.4f}" for k in keys if k in m))
    return "  ".join(parts)
