"""Short runs through the one trainer: the LR range test and the doctor's small-batch overfit
check are trainings too, so they go through :class:`~liandan.training.loop.Trainer` and the task
that owns the batch. Every task (lm, gan, diffusion, ...) gets them, with the recipe's
precision, clipping, non-finite guard and auxiliary losses, and no second optimizer loop exists.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from liandan.data.pipeline import DataModule
from liandan.recipe import Recipe, load_recipe
from liandan.training.callbacks import Callback
from liandan.training.loop import Trainer
from liandan.training.setup import torch_threads

# A short run is a probe: nothing to monitor, resume or look at afterwards.
PROBE_OVERRIDES = {"train.early_stopping": None, "train.tensorboard": False, "train.checkpoint_every": 0,
                   "doctor.enabled": False, "doctor.auto_fix": False, "report": False}


class RepeatBatch:
    """One fixed batch served ``steps`` times as one epoch (the overfit check's data)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
        self.x, self.y, self.steps = x, y, steps

    def __len__(self) -> int:
        return self.steps

    def global_size(self, i: int) -> int:  # noqa: ARG002 (every batch is the same one)
        return len(self.y)

    def shard(self, rank: int, world: int) -> None:  # noqa: ARG002 (a probe runs on one process)
        pass

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # noqa: ARG002
        for _ in range(start, self.steps):
            yield self.x, self.y


def _silent(*args, **kwargs) -> None:
    pass


def short_fit(recipe: Recipe, data: DataModule, model: nn.Module, loss_fn, device: torch.device,
              callbacks: list[Callback], out: Path | None = None) -> Trainer:
    """Train ``model`` under ``recipe`` with ``callbacks`` and no checkpoints; the finished trainer.

    The trainer's own files (metrics.csv) go to ``out``, or to a temporary folder removed after."""
    recipe = load_recipe(recipe, dict(PROBE_OVERRIDES))
    with contextlib.ExitStack() as stack:
        if out is None:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liandan-probe-")))
        stack.enter_context(torch_threads(recipe.train.threads, model))
        trainer = Trainer(recipe, data, model, loss_fn, out, device, callbacks, echo=_silent, quiet=True,
                          checkpoints=False)
        trainer.fit()
    return trainer


def one_batch_data(data: DataModule, samples: int, steps: int) -> tuple[DataModule, torch.Tensor, torch.Tensor]:
    """``data`` reduced to its first ``samples`` training samples, served ``steps`` times, no val/test."""
    xb, yb = next(iter(data.eval_batches("train").epoch(0)))
    xb, yb = xb[:samples], yb[:samples]
    return replace(data, train=RepeatBatch(xb, yb, steps), val=None, test=None), xb, yb
