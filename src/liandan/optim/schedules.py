"""Learning-rate schedules, registered with ``@register_schedule``; a linear warmup can precede
any of them (``schedule.warmup_steps``).

A per-step builder returns the LR *multiplier* as a function of the step ``t`` after warmup
(closed forms of torch's StepLR, CosineAnnealingLR, LinearLR and OneCycleLR — tests compare
them with torch). One ``LambdaLR`` then drives warmup and schedule together, so the state to
checkpoint is a single counter. ``reduce_on_plateau`` reacts to the validation loss each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim import lr_scheduler as S

from liandan.registry import SCHEDULES, register_schedule

Factor = Callable[[int], float]


@register_schedule("constant")
def constant(total_steps: int) -> Factor:
    """Keep the learning rate fixed."""
    return lambda t: 1.0


@register_schedule("step")
def step(total_steps: int, step_size: int | None = None, gamma: float = 0.1) -> Factor:
    """Multiply the rate by ``gamma`` every ``step_size`` steps (default: a third of the run).

    Args:
        step_size: optimizer steps between two decays; None: a third of the run
        gamma: factor the rate is multiplied by at each decay
    """
    size = step_size or max(1, total_steps // 3)
    return lambda t: gamma ** (t // size)


@register_schedule("cosine")
def cosine(total_steps: int, min_factor: float = 0.0) -> Factor:
    """Cosine decay to ``min_factor`` × base over the run (Loshchilov & Hutter 2017, SGDR without restarts).

    Args:
        min_factor: final rate as a fraction of the base rate
    """
    n = max(1, total_steps)
    return lambda t: min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(t, n) / n))


@register_schedule("linear")
def linear(total_steps: int, end_factor: float = 0.0) -> Factor:
    """Linear decay from the base rate to ``end_factor`` × base over the run.

    Args:
        end_factor: final rate as a fraction of the base rate
    """
    n = max(1, total_steps)
    return lambda t: 1.0 + (end_factor - 1.0) * min(t, n) / n


@register_schedule("onecycle")
def onecycle(total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
             final_div_factor: float = 1e4) -> Factor:
    """One-cycle policy (Smith 2018): cosine up from base/div to base, then down to base/(div·final_div).

    Args:
        pct_start: share of the run spent rising to the base rate
        div_factor: the run starts at base / div_factor
        final_div_factor: the run ends at base / (div_factor · final_div_factor)
    """
    up = float(pct_start * total_steps) - 1
    end = float(total_steps - 1)
    lo, hi, fin = 1 / div_factor, 1.0, 1 / (div_factor * final_div_factor)

    def anneal(a: float, b: float, pct: float) -> float:
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)

    def f(t: int) -> float:
        if t <= up:
            return anneal(lo, hi, t / up) if up > 0 else hi
        return anneal(hi, fin, min(1.0, (t - up) / max(end - up, 1e-9)))

    return f


@register_schedule("reduce_on_plateau", per="epoch")
def reduce_on_plateau(total_steps: int, factor: float = 0.1, patience: int = 3, min_lr: float = 0.0) -> dict:
    """Divide the rate by 1/factor when the validation loss stops improving for ``patience`` epochs.

    Args:
        factor: multiply the rate by this on a plateau
        patience: epochs without a better validation loss before the rate drops
        min_lr: the rate never drops below this (absolute, not a fraction)
    """
    return {"factor": factor, "patience": patience, "min_lr": min_lr}


class Schedule:
    """Warmup + schedule as one object the trainer steps after each optimizer step and epoch."""

    def __init__(self, optimizer: Optimizer, factor: Factor, warmup: int,
                 plateau: S.ReduceLROnPlateau | None = None) -> None:
        self.warmup, self.plateau = warmup, plateau

        def lam(t: int) -> float:
            if t < warmup:
                return (t + 1) / (warmup + 1)
            return factor(t - warmup)

        self.lambda_lr = S.LambdaLR(optimizer, lam)

    def after_step(self) -> None:
        # With a plateau schedule only warmup is step-driven; afterwards the plateau logic owns
        # the rate and LambdaLR must stop resetting it to base × 1.
        if self.plateau is None or self.lambda_lr.last_epoch < self.warmup:
            self.lambda_lr.step()

    def after_epoch(self, val_loss: float | None) -> None:
        if self.plateau is not None and val_loss is not None and self.lambda_lr.last_epoch >= self.warmup:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict:
        return {"lambda": {k: v for k, v in self.lambda_lr.state_dict().items() if k != "lr_lambdas"},
                "plateau": self.plateau.state_dict() if self.plateau else None}

    def load_state_dict(self, state: dict) -> None:
        self.lambda_lr.load_state_dict({**state["lambda"], "lr_lambdas": [None] * len(self.lambda_lr.lr_lambdas)})
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])


def build_schedule(optimizer: Optimizer, name: str, total_steps: int, warmup_steps: int, options: dict) -> Schedule:
    entry = SCHEDULES.get(name)
    opts = entry.validate(options, where="schedule")
    if entry.extra.get("per") == "epoch":
        cfg = entry.fn(total_steps, **opts)
        plateau = S.ReduceLROnPlateau(optimizer, mode="min", factor=cfg["factor"], patience=cfg["patience"],
                                      min_lr=cfg["min_lr"])
        return Schedule(optimizer, lambda t: 1.0, warmup_steps, plateau)
    return Schedule(optimizer, entry.fn(max(1, total_steps - warmup_steps), **opts), warmup_steps)


def current_lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
