"""Training FLOPs per sample (``Task.train_flops``, the numerator of MFU) against the FLOPs that
``FlopCounterMode`` counts over one real optimizer step of the trainer, per task."""

from __future__ import annotations

import pytest
from torch.utils.flop_counter import FlopCounterMode

import liandan
from liandan.training.callbacks import Callback

BASE = {"seed": 0, "train": {"epochs": 1, "max_steps": 1, "tensorboard": False}, "doctor": {"enabled": False},
        "report": False}
RECIPES = {
    "classify": {"name": "mlp", "data": {"source": "digits", "batch_size": 32},
                 "model": {"name": "mlp", "hidden": [64]}},
    "gan": {"name": "gan", "task": "gan", "data": {"source": "digits", "batch_size": 32, "normalize": False},
            "model": {"name": "dcgan", "nz": 16, "width": 16}},
}


class CountFirstStep(Callback):
    """FLOPs of the first training step: forward, backward and (for a GAN) both networks' steps."""

    def __init__(self) -> None:
        self.mode, self.flops, self.batch = None, None, None

    def on_batch_start(self, trainer, x, y) -> None:
        if self.flops is None and self.mode is None:
            self.mode, self.batch = FlopCounterMode(display=False), len(x)
            self.mode.__enter__()

    def on_step_end(self, trainer, loss, grad_norm, applied) -> None:
        if self.mode is not None and self.flops is None:
            self.mode.__exit__(None, None, None)
            self.flops = self.mode.get_total_flops()


@pytest.mark.parametrize("task", list(RECIPES))
def test_train_flops_match_a_counted_step(task: str, tmp_path) -> None:
    counter = CountFirstStep()
    run = liandan.train({**BASE, **RECIPES[task]}, out=tmp_path / task, callbacks=[counter], quiet=True)
    per_sample, estimate = counter.flops / counter.batch, run.summary["train_flops_per_sample"]
    # The convention counts a backward as two forwards (weight and input gradients). The first
    # layer needs no input gradient, and a frozen D in the GAN's G step no weight gradient, so a
    # real step counts between 2/3 of the estimate (one-layer extreme) and all of it.
    assert 2 / 3 * estimate <= per_sample <= 1.001 * estimate
