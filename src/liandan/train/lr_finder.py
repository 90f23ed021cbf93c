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

import numpy as np
import torch

from liandan.errors import LiandanError


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    csv_path: Path | None = None
    plot_path: Path | None = None


def lr_find(recipe, overrides: list[str] | dict | None = None, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, beta: float = 0.98, diverge: float = 4.0,
            out: str | Path | None = None) -> LRFindResult:
    """Run the range test on ``recipe`` and return the curve and the suggested learning rate."""
    from liandan.optim import build_optimizer
    from liandan.recipe import load_recipe
    from liandan.train.run import prepare
    from liandan.train.setup import default_threads

    if not 0 < start_lr < end_lr:
        raise LiandanError(f"lr-find: need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_steps < 10:
        raise LiandanError("lr-find: num_steps must be at least 10")
    rec = load_recipe(recipe, overrides)
    data, model, _, loss_fn, device = prepare(rec)
    torch.set_num_threads(rec.train.threads or default_threads(model))
    opt = build_optimizer(model, rec.optim.name, start_lr, rec.optim.weight_decay, rec.optim.options,
                          rec.optim.decay_bias_and_norm)
    gamma = (end_lr / start_lr) ** (1 / (num_steps - 1))
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    model.train()
    step, epoch = 0, 0
    while step < num_steps:
        for xb, yb in data.train.epoch(epoch):
            lr = start_lr * gamma**step
            for g in opt.param_groups:
                g["lr"] = lr
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            v = float(loss.detach())
            if not math.isfinite(v):
                step = num_steps
                break
            avg = beta * avg + (1 - beta) * v
            s = avg / (1 - beta ** (step + 1))
            lrs.append(lr)
            losses.append(v)
            smoothed.append(s)
            best = min(best, s)
            step += 1
            if s > diverge * best or step >= num_steps:
                step = num_steps
                break
        epoch += 1
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


__all__ = ["LRFindResult", "lr_find", "suggest", "torch"]
