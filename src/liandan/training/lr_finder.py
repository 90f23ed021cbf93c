"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's ``lr_find``).

Train from the recipe's initial weights while the rate grows exponentially from ``start_lr`` to
``end_lr``; record the loss, smooth it with a bias-corrected EMA, and stop once it exceeds
``diverge`` × its minimum — or once the raw loss climbs back above where it started after settling
well below it (:meth:`RangeTest._spike`: the EMA lags too far behind to see a spike); the rate the
sweep broke at is kept (``diverged_at``). The suggestion is the rate where the smoothed loss falls fastest
(steepest negative slope against log lr): large enough to learn quickly, still well below where
training blows up. The usable range (:func:`usable_range`) runs from a decade below the suggestion
up to the larger of the suggestion and a tenth of the rate at the loss minimum (fastai's
``lr_min``): the doctor judges a recipe's rate against it, so ``liandan lr-find`` and
``liandan doctor`` hold one opinion on the learning rate. Every result is cached under
``<state home>/lr_find/`` keyed by what the curve depends on (:func:`finder_key`), so the doctor
reads the curve ``lr-find`` drew instead of drawing its own.
"""

from __future__ import annotations

import csv
import hashlib
import json
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
    min_lr: float | None = None  # the rate at the smoothed loss's minimum
    informative: bool = True  # False: the loss never fell 5 % below its start; no rate can be read
    diverged_at: float | None = None  # the rate the sweep stopped at because training broke, if it did

    @property
    def usable(self) -> tuple[float, float]:
        """(low, high) end of the usable range (:func:`usable_range`)."""
        return usable_range(self.suggestion, self.min_lr)


# Bump when the test or the suggestion changes: cached curves of an older version are ignored.
CACHE_VERSION = 9
FELL = 0.6  # a raw loss back above the start after settling at this share of it ends the sweep
EXTEND = 4  # a flat sweep is repeated with this many times the steps
# What the curve does not depend on: the rate (the test sets it), the schedule, how long and how
# the real run trains and is watched.
_TRAIN_KEYS = ("precision", "grad_clip", "grad_clip_value", "accumulate")


def usable_range(suggestion: float, min_lr: float | None) -> tuple[float, float]:
    """The rates the range test calls usable: from a decade below the steepest descent (slower
    than needed, Smith 2017) up to the larger of the suggestion and ``min_lr``/10 — fastai's
    ``lr_min``, the largest rate still an order of magnitude below the loss minimum, past which
    the loss turns up and diverges."""
    hi = max(suggestion, min_lr / 10) if min_lr else suggestion
    return suggestion / 10, hi


def finder_key(recipe: Any, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100) -> str:
    """A hash of everything the range test's curve depends on: data, model, loss, adapter, task,
    seed, the optimizer without its rate, precision/clipping/accumulation, the sweep."""
    d = recipe.to_dict()
    optim = {k: v for k, v in d["optim"].items() if k != "lr"}
    train = {k: d["train"].get(k) for k in _TRAIN_KEYS}
    key = {"v": CACHE_VERSION, "seed": d["seed"], "task": d["task"], "data": d["data"], "model": d["model"],
           "adapter": d.get("adapter"), "loss": d["loss"], "optim": optim, "train": train,
           "sweep": [float(start_lr), float(end_lr), int(num_steps)]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cache_path(key: str) -> Path:
    from liandan.paths import state_home

    return state_home() / "lr_find" / f"{key}.json"


def cached(key: str) -> dict[str, Any] | None:
    """The cached summary of a range test (``suggestion``, ``min_lr``, ``low``, ``high``, ``points``)."""
    path = _cache_path(key)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if doc.get("version") == CACHE_VERSION and doc.get("key") == key else None


def summary(key: str, res: LRFindResult) -> dict[str, Any]:
    """What the doctor reads of a range test: the suggestion, the usable range, the sweep's extent."""
    lo, hi = res.usable
    return {"version": CACHE_VERSION, "key": key, "suggestion": res.suggestion, "min_lr": res.min_lr, "low": lo,
            "high": hi, "points": len(res.lrs), "last_lr": res.lrs[-1], "informative": res.informative,
            "diverged_at": res.diverged_at}


def remember(key: str, res: LRFindResult) -> dict[str, Any]:
    """Cache ``res``'s summary under ``key`` (best effort: a read-only home only loses the cache)."""
    from liandan.runs import write_json

    doc = summary(key, res)
    try:
        path = _cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, doc)
    except OSError:
        pass
    return doc


class RangeTest(Callback):
    """Sets every optimizer's rate before each step and records the loss; stops on divergence."""

    def __init__(self, start_lr: float, gamma: float, num_steps: int, beta: float, diverge: float) -> None:
        self.start_lr, self.gamma, self.num_steps, self.beta, self.diverge = start_lr, gamma, num_steps, beta, diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._avg, self._best, self._lr = 0.0, math.inf, start_lr
        self.diverged_at: float | None = None  # the rate of the step at which training broke
        self._settled = math.inf  # the lowest median of 5 consecutive raw losses so far
        self._start: tuple[float, float] | None = None  # (start level, settled bar) from the first 10

    def _spike(self, v: float) -> bool:
        """The raw loss climbs back above where the sweep began after it had settled well below it
        (a median of 5 consecutive raw losses ≤ ``FELL`` × the start and 5 standard deviations of
        the first 10 losses below it): the rate has broken training. The EMA lags by ~1/(1 - beta)
        steps — several decades of rate on a 100-step sweep — so a spike (Adam at 3e-2 on a digits
        MLP: 0.89 → 3.37) barely moves the smoothed curve, which then dips again past it and calls a
        rate 5× above the spike usable. The median and the noise bar keep batch noise from counting
        as a descent: a fine-tune whose batches scatter 0.04–0.19 at the start, or diabetes (one
        0.38 among values near 1.2)."""
        if len(self.losses) < 10:
            return False
        if self._start is None:  # the start level and the bar a descent must pass, fixed once
            first = np.asarray(self.losses[:10])
            start = float(np.median(first))
            self._start = (start, min(FELL * start, start - 5 * float(first.std())))
        self._settled = min(self._settled, float(np.median(self.losses[-5:])))
        start, bar = self._start
        return start > 0 and self._settled <= bar and v > start

    def on_batch_start(self, trainer: Trainer, x: Any, y: Any) -> None:
        lr = self._lr = self.start_lr * self.gamma ** len(self.lrs)
        for opt in trainer.optimizers():
            for g in opt.param_groups:
                g["lr"] = lr

    def on_step_end(self, trainer: Trainer, loss: Any, grad_norm: Any, applied: bool) -> None:
        v = float(loss)
        if not applied or not math.isfinite(v):  # the trainer skipped a non-finite step: diverged
            self.diverged_at = self._lr
            trainer.status = "completed"
            return
        k = len(self.lrs)
        spike = self._spike(v)
        self._avg = self.beta * self._avg + (1 - self.beta) * v
        s = self._avg / (1 - self.beta ** (k + 1))  # bias-corrected EMA
        self.lrs.append(self._lr)  # the rate this step ran at (the schedule may reset it after)
        self.losses.append(v)
        self.smoothed.append(s)
        self._best = min(self._best, s)
        if spike or s > self.diverge * self._best:
            self.diverged_at = self._lr
        if self.diverged_at is not None or len(self.lrs) >= self.num_steps:
            trainer.status = "completed"


def lr_find(recipe, overrides: list[str] | dict | None = None, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, beta: float = 0.98, diverge: float = 4.0,
            out: str | Path | None = None, extend: int = EXTEND) -> LRFindResult:
    """Run the range test on ``recipe`` and return the curve and the suggested learning rate.

    The test is a short training through the trainer, so it works for every task (the task owns
    the loss: lm, gan, diffusion, ...), with the recipe's precision, clipping and accumulation.
    A flat sweep (:func:`informative`: the loss never fell 5 %) is run once more, from a fresh
    model, with ``extend``× the steps over the same rates: a CNN under Adam needs a few hundred
    updates to leave its starting plateau, which 100 steps over eight decades do not give it
    (LeNet-5 on digits: 1.7 % drop in 100 steps, a clear descent and minimum in 400). The result
    is cached under the sweep the caller asked for, so ``lr-find`` and the doctor read one curve."""
    from liandan.recipe import load_recipe
    from liandan.training.run import prepare
    from liandan.training.short_runs import short_fit

    if not 0 < start_lr < end_lr:
        raise LiandanError(f"lr-find: need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    if num_steps < 10:
        raise LiandanError("lr-find: num_steps must be at least 10")
    rec = load_recipe(recipe, overrides)

    def sweep(steps: int) -> RangeTest:
        data, model, _, loss_fn, device = prepare(rec)  # a fresh model for each sweep
        spe = max(1, -(-len(data.train) // rec.train.accumulate))
        # a constant schedule (the callback sets the rate) and enough epochs for the steps
        run_rec = load_recipe(rec, {"schedule.name": "constant", "schedule.warmup_steps": 0,
                                    "train.max_steps": steps, "train.epochs": -(-steps // spe)})
        test = RangeTest(start_lr, (end_lr / start_lr) ** (1 / (steps - 1)), steps, beta, diverge)
        short_fit(run_rec, data, model, loss_fn, device, [test])
        return test

    test = sweep(num_steps)
    if extend > 1 and len(test.lrs) >= 5 and not informative(test.smoothed):
        test = sweep(num_steps * extend)
    lrs, losses, smoothed = test.lrs, test.losses, test.smoothed
    if len(lrs) < 5:
        raise LiandanError("lr-find: the loss diverged almost at once; lower start_lr")
    suggestion = suggest(lrs, smoothed)
    res = LRFindResult(lrs, losses, smoothed, suggestion, min_lr=float(lrs[minimum(smoothed)]),
                       informative=informative(smoothed), diverged_at=test.diverged_at)
    remember(finder_key(rec, start_lr, end_lr, num_steps), res)
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


# A curve whose smoothed loss never falls 5 % below where it started carries no opinion.
MIN_DROP = 0.05


def _start(smoothed: list[float]) -> float:
    """The starting level: the median of the smoothed curve over the fifth of the sweep (at least 3
    points) that follows the EMA's warm-up, where the rate is still too small to move anything. The
    warm-up itself (the first tenth) is the first batch or two: one noisy batch of a regression
    there lifted or sank the "start" and faked a descent, or hid one."""
    cut = _warmup(smoothed)
    return float(np.median(np.asarray(smoothed)[cut: cut + max(3, len(smoothed) // 5)]))


def _warmup(smoothed: list[float]) -> int:
    """How many first points the EMA's warm-up dominates: the first tenth, at least one (none for a
    curve of three points or fewer)."""
    return max(1, len(smoothed) // 10) if len(smoothed) > 3 else 0


def minimum(smoothed: list[float]) -> int:
    """Index of the smoothed curve's minimum past the EMA's warm-up (the first tenth, at least one
    point): there the average is the first batch or two, and one lucky batch would be the minimum
    at the sweep's smallest rate (diabetes: 0.79 at 1e-7, every later point ≥ 0.79)."""
    cut = _warmup(smoothed)
    return cut + int(np.argmin(np.asarray(smoothed)[cut:]))


def informative(smoothed: list[float]) -> bool:
    """Did the loss really descend during the sweep — its smoothed minimum ≥ 5 % below the
    starting level? A flat curve (a ViT that needs warm-up, 100 steps too few) has its
    "steepest descent" and its minimum in the noise: no rate can be read from it."""
    if len(smoothed) < 3:
        return False
    start = _start(smoothed)
    return start > 0 and smoothed[minimum(smoothed)] <= (1 - MIN_DROP) * start


def suggest(lrs: list[float], smoothed: list[float]) -> float:
    """The rate at the steepest descent of the smoothed loss, ignoring the noisy ends: only points
    before the minimum, past the EMA's warm-up, and already a quarter of the way down from the
    starting level to the minimum, in the one stretch that stays there down to the minimum — batch
    noise at the flat start has steep slopes too."""
    x = np.log10(np.asarray(lrs))
    y = np.asarray(smoothed)
    cut, m = _warmup(smoothed), minimum(smoothed)  # the first points are dominated by the EMA warm-up
    end = m + 1  # nothing past the minimum: the loss is already rising there
    if end - cut < 3:
        cut, end = 0, len(y)
    slope = np.gradient(y[cut:end], x[cut:end])
    start, low = _start(smoothed), float(y[m])
    down = y[cut:end] <= start - 0.25 * (start - low)  # in the descent, not in the noise before it
    if informative(smoothed) and down.any():
        # only the descent that reaches the minimum: the last stretch of points below the bar. A dip
        # in the noisy flat start (diabetes at 1e-6, batch to batch) is below it too, then climbs back.
        above_bar = np.flatnonzero(~down)
        first = above_bar[-1] + 1 if above_bar.size else 0
        down[:first] = False
        slope = np.where(down, slope, np.inf)
    return float(lrs[cut + int(np.argmin(slope))])


def y_range(losses: list[float], smoothed: list[float]) -> tuple[float, float]:
    """The informative band of the curve: from the lowest loss to 3× the starting loss (the
    median of the first few raw losses), so one spike past divergence does not flatten the
    descent the suggestion is read from."""
    raw = [v for v in losses if math.isfinite(v)] or [0.0, 1.0]
    start = float(np.median(raw[:5]))
    lo = min(min(raw), min(v for v in smoothed if math.isfinite(v)) if smoothed else min(raw))
    hi = min(max(max(raw), max(smoothed, default=start)), 3 * start) if start > 0 else max(raw)
    if hi <= lo:
        hi = lo + 1.0
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


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
    ax.set_ylim(*y_range(res.losses, res.smoothed))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["LRFindResult", "RangeTest", "cached", "finder_key", "informative", "lr_find", "remember", "suggest",
           "summary", "usable_range", "y_range"]
