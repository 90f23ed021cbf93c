"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's ``lr_find``).

Train from the recipe's initial weights while the rate grows exponentially from ``start_lr`` to
``end_lr``; record the loss, smooth it with a bias-corrected EMA, and stop once it exceeds
``diverge`` × its minimum. The suggestion is the rate where the smoothed loss falls fastest
(steepest negative slope against log lr): large enough to learn quickly, still well below where
training blows up.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from liandan.errors import LiandanError
from liandan.training.callbacks import Callback

if TYPE_CHECKING:
    from liandan.training.loop import Trainer


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    csv_path: Path | None = None
    plot_path: Path | None = None


class RangeTest(Callback):
    """Sets every optimizer's rate before each step and records the loss; stops on divergence."""

    def __init__(self, start_lr: float, gamma: float, num_steps: int, beta: float, diverge: float) -> None:
        self.start_lr, self.gamma, self.num_steps, self.beta, self.diverge = start_lr, gamma, num_steps, beta, diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._avg, self._best, self._lr = 0.0, math.inf, start_lr

    def on_batch_start(self, trainer: Trainer, x: Any, y: Any) -> None:
        lr = self._lr = self.start_lr * self.gamma ** len(self.lrs)
        for opt in trainer.optimizers():
            for g in opt.param_groups:
                g["lr"] = lr

    def on_step_end(self, trainer: Trainer, loss: Any, grad_norm: Any, applied: bool) -> None:
        v = float(loss)
        if not applied or not math.isfinite(v):  # the trainer skipped a non-finite step: diverged
            trainer.status = "completed"
            return
        k = len(self.lrs)
        self._avg = self.beta * self._avg + (1 - self.beta) * v
        s = self._avg / (1 - self.beta ** (k + 1))  # bias-corrected EMA
        self.lrs.append(self._lr)  # the rate this step ran at (the schedule may reset it after)
        self.losses.append(v)
        self.smoothed.append(s)
        self._best = min(self._best, s)
        if s > self.diverge * self._best or len(self.lrs) >= self.num_steps:
            trainer.status = "completed"


def lr_find(recipe, overrides: list[str] | dict | None = None, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, beta: float = 0.98, diverge: float = 4.0,
            out: str | Path | None = None) -> LRFindResult:
    """Run the range test on ``recipe`` and return the curve and the suggested learning rate.

    The test is a short training through the trainer, so it works for every task (the task owns
    the loss: lm, gan, diffusion, ...), with the recipe's precision, clipping and accumulation."""
    from liandan.recipe import load_recipe
    from liandan.training.run import prepare
    from liandan.training.short_runs import short_fit

    if not 0 < start_lr < end_lr:
        raise LiandanError(f"lr-find: need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_steps < 10:
        raise LiandanError("lr-find: num_steps must be at least 10")
    rec = load_recipe(recipe, overrides)
    data, model, _, loss_fn, device = prepare(rec)
    spe = max(1, -(-len(data.train) // rec.train.accumulate))
    # a constant schedule (the callback sets the rate) and enough epochs for num_steps steps
    rec = load_recipe(rec, {"schedule.name": "constant", "schedule.warmup_steps": 0, "train.max_steps": num_steps,
                            "train.epochs": -(-num_steps // spe)})
    test = RangeTest(start_lr, (end_lr / start_lr) ** (1 / (num_steps - 1)), num_steps, beta, diverge)
    short_fit(rec, data, model, loss_fn, device, [test])
    lrs, losses, smoothed = test.lrs, test.losses, test.smoothed
    if len(lrs) < 5:
        raise LiandanError("lr-find: the loss diverged almost at once; lower start_lr")
    suggestion = suggest(lrs, smoothed)
    res = LRFindResult(lrs, losses, smoothed, suggestion)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        res.csv_path = out / "lr_find.csv"
        with open(res.csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["lr", "loss", "smoothed"])
            w.writerows(zip(lrs, losses, smoothed, strict=True))
        res.plot_path = _plot(res, out / "lr_find.png")
    return res


def suggest(lrs: list[float], smoothed: list[float]) -> float:
    """The rate at the steepest descent of the smoothed loss, ignoring the noisy ends."""
    x = np.log10(np.asarray(lrs))
    y = np.asarray(smoothed)
    cut = max(1, len(y) // 10)  # the first points are dominated by the EMA warm-up
    end = int(np.argmin(y)) + 1  # nothing past the minimum: the loss is already rising there
    if end - cut < 3:
        cut, end = 0, len(y)
    slope = np.gradient(y[cut:end], x[cut:end])
    return float(lrs[cut + int(np.argmin(slope))])


def _plot(res: LRFindResult, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(res.lrs, res.losses, alpha=0.3, label="loss")
    ax.plot(res.lrs, res.smoothed, label="smoothed")
    ax.axvline(res.suggestion, color="red", ls="--", label=f"suggested {res.suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["LRFindResult", "RangeTest", "lr_find", "suggest"]
