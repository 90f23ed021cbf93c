"""Retraining probes rules share: the run's own recipe with a few keys changed
(a larger rank for ``lora_rank_too_low``, no adapter for ``adapter_collapse``), trained from the
same base for the run's number of steps, its numbers kept as one record in the probe log.

A probe trains only when its rule's cheap checks have fired (as the LR range test of
:mod:`liandan.doctor.lr_opinion`), inside ``torch.random.fork_rng`` with Python's and NumPy's
generators restored after, so the running job's random streams are untouched.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from liandan.doctor.rules._signal import Signal, above, all_of, any_of, below, flag
from liandan.doctor.view import RunView, finite

PROBE_STEPS = 2000  # at most: a probe costs at most this many steps of the recipe
PROBE_GAIN = 0.1  # quality an ablation probe must gain over the run to confirm the cause


def tail(losses: list[float]) -> float:
    """Mean of the last 10 % (at least 3) of the finite losses: the loss a run ended at."""
    lo = finite(losses)
    if not lo:
        return float("nan")
    k = max(3, len(lo) // 10)
    return sum(lo[-k:]) / len(lo[-k:])


def head(losses: list[float]) -> float:
    """Mean of the first 10 % (at least 3) of the finite losses: the loss a run started at."""
    lo = finite(losses)
    if not lo:
        return float("nan")
    k = max(3, len(lo) // 10)
    return sum(lo[:k]) / len(lo[:k])


def probe_steps(view: RunView) -> int:
    """The run's optimizer steps, at most :data:`PROBE_STEPS` (step numbers: a metrics.csv view logs
    every 10th, so the last one is read, not the count)."""
    return min(view.steps[-1] if view.steps else 0, PROBE_STEPS)


def run_loss(view: RunView, steps: int) -> float:
    """The run's training loss at the end of its first ``steps`` steps (the probe's horizon)."""
    return tail([lo for st, lo in zip(view.steps, view.loss, strict=True) if st <= steps])


def cached(view: RunView, kind: str, train: Callable[[RunView], dict[str, Any]]) -> dict[str, Any] | None:
    """The ``kind`` record: found among the view's records (a post-hoc diagnosis reads what the live
    doctor measured), else ``train(view)`` now, appended to the records and the probe log.
    None when the probe was skipped (its record says why)."""
    rec = next((r for r in view.records if r.get("type") == kind), None)
    if rec is None:
        rec = train(view)
        view.records.append(rec)
        if (sink := view.extra.get("sink")) is not None:
            sink(rec)
    return rec if "skipped" not in rec else None


def retrain(view: RunView, patch: dict[str, Any]) -> tuple[list[float], dict[str, Any]] | str:
    """Train the run's recipe with ``patch`` (plus ``train.max_steps`` = the run's steps, no early
    stopping) from the same base: (per-step training losses, last epoch's metrics), or a one-line
    reason it could not (a distributed run, too few steps, a recipe the patch breaks)."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from liandan.recipe import load_recipe
    from liandan.training.callbacks import Callback
    from liandan.training.run import prepare
    from liandan.training.short_runs import short_fit

    if dist.is_available() and dist.is_initialized():  # rank 0 would train alone while the others wait
        return "distributed run"
    steps = probe_steps(view)
    if steps < 10:
        return "fewer than 10 steps"

    class Losses(Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.metrics: dict[str, Any] = {}

        def on_step_end(self, trainer: Any, loss: Any, grad_norm: Any, applied: bool) -> None:
            self.losses.append(float(loss))

        def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
            self.metrics = metrics

    py, npy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():  # the running job's random streams stay as they were
            rc = load_recipe(view.recipe, {**patch, "train.max_steps": steps, "train.early_stopping": None})
            data, model, _, loss_fn, device = prepare(rc)
            watch = Losses()
            short_fit(rc, data, model, loss_fn, device, [watch])
    except Exception as e:  # noqa: BLE001 (a recipe the probe cannot rebuild: no opinion)
        return f"{type(e).__name__}: {str(e).strip()[:160]}"
    finally:
        random.setstate(py)
        np.random.set_state(npy)
    return watch.losses, {k: dict(v) for k, v in watch.metrics.items() if isinstance(v, dict)}


def ablation(view: RunView, kind: str, patch: dict[str, Any]) -> dict[str, Any]:
    """The ``kind`` record of an ablation probe: the run's recipe with ``patch`` (a regulariser
    removed, the inputs standardised), its steps, its quality on the run's scale and its last
    training loss — or why it was skipped."""
    got = retrain(view, patch)
    if isinstance(got, str):
        return {"type": kind, "skipped": got}
    losses, metrics = got
    return {"type": kind, "patch": patch, "steps": len(losses), "probe_quality": quality_of(view, metrics),
            "probe_train_loss": (metrics.get("train") or {}).get("loss"), "probe_metrics": metrics}


def measured(view: RunView, kind: str) -> dict[str, Any] | None:
    """The ``kind`` probe record already among the view's records, if it measured a quality
    (read only: nothing is trained)."""
    return next((r for r in view.records if r.get("type") == kind and r.get("probe_quality") is not None), None)


def quality_of(view: RunView, metrics: dict[str, Any]) -> float | None:
    """A probe's last epoch on the run's quality scale (:meth:`RunView.quality`); None without one."""
    if not metrics:
        return None
    probe_view = RunView(view.recipe, view.task, view.num_classes, view.input_shape,
                         [{"type": "epoch", "epoch": 0, **metrics}])
    q = probe_view.quality()
    return None if math.isnan(q) else q


def gain(view: RunView, rec: dict[str, Any], name: str) -> Signal:
    """An ablation probe confirms its cause: it ends ≥ 0.1 quality above the run, or ≥ 0.05 above
    it while leaving at most half the run's shortfall (quality 0.85 → 0.94, or R² 0.89 → 0.98: the
    change removed most of what was left to learn)."""
    run = max(view.quality(), 0.0)
    left = 1.0 - run
    share = (1.0 - rec["probe_quality"]) / left if left > 0 else 1.0
    halved = all_of(above(name, rec["probe_quality"] - run, PROBE_GAIN / 2),
                    below("shortfall_left_by_probe", share, 0.5), name="halved")
    return any_of(above(name, rec["probe_quality"] - run, PROBE_GAIN), halved, name="probe_gain")


def confirms(view: RunView, kind: str, train: Callable[[RunView], dict[str, Any]], name: str) -> Signal:
    """The ``kind`` probe (found among the records, else trained by ``train``) ends clearly above
    the run (:func:`gain`); a probe that was skipped or measured nothing confirms nothing.
    It trains only at the run's end: asked after an early epoch, it would train that epoch's steps
    and be compared, cached, with the finished run — a probe shorter than the run it judges."""
    if view.phase != "end":
        return flag(name, False)
    rec = cached(view, kind, train)
    if rec is None or rec.get("probe_quality") is None:
        return flag(name, False)
    return gain(view, rec, name)
