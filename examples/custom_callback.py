"""A user callback with state: passed from Python, named from a recipe, resumed exactly.

``LossEMA`` keeps an exponential moving average of the training loss (a tensor: no host sync
per step), writes it to RUN/loss_ema.json when the run ends, and can stop the run once the
average falls below a target. Its state (the average and the steps it has seen) goes into every
checkpoint, so ``liandan resume`` continues the average where the run stopped.

    python examples/custom_callback.py [--out DIR]

Prints one JSON line: the average of each run (the Python one, the recipe one, and the recipe
one resumed for two more epochs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import liandan
from liandan.training.callbacks import Callback, register_callback

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@register_callback("loss_ema")  # recipes name it: train.callbacks: [{name: loss_ema, beta: 0.8}]
class LossEMA(Callback):
    """Exponential moving average of the training loss; optionally stop once it is below ``stop_below``."""

    def __init__(self, beta: float = 0.9, stop_below: float | None = None) -> None:
        self.beta, self.stop_below = beta, stop_below
        self.ema: torch.Tensor | None = None
        self.steps = 0

    def on_step_end(self, trainer: Trainer, loss: torch.Tensor, grad_norm: torch.Tensor, applied: bool) -> None:
        if not applied:  # a step the non-finite guard skipped says nothing about the loss
            return
        loss = loss.detach().float()
        self.ema = loss.clone() if self.ema is None else self.beta * self.ema + (1 - self.beta) * loss
        self.steps += 1

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, dict[str, float]]) -> None:
        # one host sync per epoch, and the stop goes through the trainer (never trainer.status)
        if self.stop_below is not None and self.ema is not None and float(self.ema) < self.stop_below:
            trainer.request_stop("completed", f"loss EMA {float(self.ema):.4f} < {self.stop_below}")

    def on_fit_end(self, trainer: Trainer) -> None:
        if trainer.is_main:
            (trainer.dir / "loss_ema.json").write_text(json.dumps(self.summary()) + "\n")

    def summary(self) -> dict[str, Any]:
        return {"ema": None if self.ema is None else float(self.ema), "steps": self.steps}

    # what a checkpoint stores and a resumed run gets back (tensors and plain values only)
    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema, self.steps = state["ema"], state["steps"]


def main(out: Path) -> dict[str, Any]:
    quiet = {"report": False, "train.tensorboard": False, "doctor.enabled": False}
    # 1. From Python: an instance, like any other argument.
    ema = LossEMA(beta=0.9)
    liandan.train("wine-mlp", {**quiet, "train.epochs": 3}, out=out / "python", quiet=True, callbacks=[ema])
    # 2. From a recipe: by registered name, options checked against LossEMA's __init__.
    named = {**quiet, "train.epochs": 2, "train.callbacks": [{"name": "loss_ema", "beta": 0.8}]}
    run = liandan.train("wine-mlp", named, out=out / "recipe", quiet=True)
    first = json.loads((run.dir / "loss_ema.json").read_text())
    # 3. Resume for two more epochs: recipe.yaml names the callback again, the checkpoint restores its state.
    liandan.resume(run.dir, quiet=True, epochs=4)
    resumed = json.loads((run.dir / "loss_ema.json").read_text())
    return {"python": ema.summary(), "recipe": first, "resumed": resumed}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = ap.parse_args()
    if args.out is not None:
        print(json.dumps(main(args.out)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(main(Path(tmp))))
