"""Tasks: how a batch becomes a loss and metrics.

The trainer owns the loop (devices, precision, accumulation, clipping, checkpoints, probes, the
run directory); a recipe's ``task`` picks the object that owns the rest. A task is a small class
registered with ``@register_task(name)``::

    @register_task("classify")
    class Classify(Task):
        def forward(self, net, x, y): out = net(x); return self.loss_fn(out, y), out

Batches stay ``(x, y)`` pairs for every task (images and captions, tokens and targets, images
and unused labels), so loaders, sharding and resume need not know the task.

Tasks with more than one network (a GAN's generator and discriminator) take over the whole
optimizer step with :meth:`Task.train_step` and keep their extra state in
:meth:`Task.state_dict`, which the trainer checkpoints and restores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from liandan.registry import TASKS

if TYPE_CHECKING:
    from liandan.data.pipeline import DataInfo
    from liandan.recipe import Recipe
    from liandan.training.loop import Trainer


class Tally(Protocol):
    """Metric sums over batches, with no host sync per batch (tensors stay on the device)."""

    def update(self, out: Any, y: torch.Tensor, loss: torch.Tensor) -> None: ...
    def compute(self) -> dict[str, float]: ...
    def reset(self) -> None: ...


class Task:
    """Base task: ``forward`` calls the network and the recipe's loss on its output."""

    name = ""
    default_loss: str | None = None  # None: the task computes its own loss (lm, gan, diffusion, ...)
    higher_is_better: frozenset[str] = frozenset()

    def __init__(self, info: DataInfo, loss_fn, recipe: Recipe) -> None:
        self.info, self.loss_fn, self.recipe = info, loss_fn, recipe

    def metric_names(self) -> list[str]:
        """Metrics logged besides ``loss`` (metrics.csv columns, early-stopping monitors)."""
        return []

    def forward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Loss of one micro-batch and the output the tally sees."""
        out = net(x)
        if getattr(self.loss_fn, "needs_input", False):  # distillation: the teacher sees the same batch
            return self.loss_fn(out, y, x=x, info=self.info), out
        return self.loss_fn(out, y), out

    def train_flops(self, model: nn.Module, sample: torch.Tensor) -> int:
        """Training FLOPs per sample: forward + backward ≈ 3 × the forward of one sample (0: unknown)."""
        from liandan.training.flops import forward_flops

        return 3 * forward_flops(model, sample)

    def tally(self, device: torch.device, light: bool = False) -> Tally:
        """Accumulator of ``metric_names()``; ``light`` is the per-step training tally (cheap)."""
        return LossTally(device)

    # --- hooks for tasks that own the optimizer step -------------------------------------------
    train_step = None  # or a method (trainer, batches: list[(x, y)]) -> (applied, grad_norm, loss)

    def setup(self, trainer: Trainer) -> None:
        """Called once the trainer has built its optimizer and schedule (add more here)."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers this task steps besides the trainer's own (a GAN's discriminator's)."""
        return []

    def after_step(self, trainer: Trainer, applied: bool) -> None:
        """Called after every optimizer step of the trainer's own (``applied``: not skipped as non-finite)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LossTally:
    """The mean loss only."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.n = torch.zeros((), dtype=torch.float64, device=self.device), 0

    @torch.no_grad()
    def update(self, out: Any, y: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_sum += loss.detach() * len(y)
        self.n += len(y)

    def compute(self) -> dict[str, float]:
        return {"loss": float(self.loss_sum) / max(self.n, 1)}


def build_task(info: DataInfo, loss_fn, recipe: Recipe) -> Task:
    return TASKS.get(info.task).fn(info, loss_fn, recipe)


def task_names() -> list[str]:
    return TASKS.names()


from liandan.training.tasks import (  # noqa: E402,F401  (sibling modules register their tasks on import)
    generative,  # gan, diffusion
    language,  # lm, mlm
    supervised,  # classify, regress
    vision_language,  # contrastive, caption
)
