"""exploding_gradients: the gradient norm grows by orders of magnitude.

Symptom: the global gradient norm rises above 1e3× its value over the first steps, or above
1e6 (TheDeepChecker's mean|g| > 1e6), or becomes non-finite after growing. AutoTrainer's
layer ratio G_first/G_last > 70 fires on healthy MLPs by itself (DeepDiagnosis re-run: 14 of
15 normal Blob/Circle models), so, as AutoTrainer does, it only counts with a second signal:
here the loss got worse, went non-finite, or the run learned poorly.
Causes and fixes: notes 梯度爆炸 (原因 1–4, 解决 1–6).
Dead ReLUs are hidden as the blow-up's consequence, except where they are not (only) that
(:func:`units_outlived_blowup`): most units of a layer were dead at a probe *before* the first
blown-up or non-finite step (a cause precedes its effect), or the blow-up was over — every step
finite, the last gradients back within 10× of the first step's — while the units stayed dead, or a
probe found them dead in a lull (the loss back within 2× of its start, the gradients within 10× of the
first step's) before the run blew up again: the damage that keeps the run at chance is then the dead units, reported
beside the blow-up.
"""

from __future__ import annotations

import bisect
import math

from liandan.doctor.findings import Finding
from liandan.doctor.lr_opinion import rate_above_range
from liandan.doctor.rules._common import fix, fixes, g, good_init, init_desc, init_gain, layer_numbers, lower_lr, make
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, count, exceeds, learns_poorly, signal_of, silent
from liandan.doctor.rules.dead_relu import DEAD
from liandan.doctor.rules.dead_relu import signal as dead_signal
from liandan.doctor.view import RunView, finite, median, typical_lr
from liandan.registry import register_rule

CODE = "exploding_gradients"
GROWTH = 1e3
ABSOLUTE = 1e6


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Growth of the gradient norm over the first step's (> 1e3×, or > 1e6 absolute, or non-finite
    after > 10×), and a second signal: the loss got worse (or NaN) or the run learns poorly."""
    gn = view.grad_norm
    fin = finite(gn)
    if not fin or not fin[0] > 0:
        return silent("no finite gradient norm")
    base = fin[0]
    grew = [above("growth", max(fin) / base, GROWTH), above("grad_norm", max(fin), ABSOLUTE)]
    bad_at = [i for i, x in enumerate(gn) if not math.isfinite(x)]
    if bad_at:  # the prefix maximum only grows: the last overflow has the largest growth before it
        grew.append(above("growth_before_overflow", max(finite(gn[:bad_at[-1]]) or [0.0]) / base, 10.0))
    fl = finite(view.loss)
    worse = [count("bad_steps", len(view.bad_steps()))]
    if len(fl) > 3:
        worse.append(exceeds("loss_end_over_start", view.loss_window(False), view.loss_window(True)))
    return all_of(any_of(*grew, name="grew"), any_of(*worse, learns_poorly(view), name="worse"))


def blowup_step(view: RunView) -> int | None:
    """The first step whose gradient norm is > 1e3× the first step's (or > 1e6), or non-finite after
    growing > 10× (None: no such step)."""
    steps, gn = view.steps, view.grad_norm
    fin = finite(gn)
    if not fin:
        return None
    base = fin[0]
    for i, (s, x) in enumerate(zip(steps, gn, strict=True)):
        if math.isfinite(x) and (x > GROWTH * base or x > ABSOLUTE):
            return s
        if not math.isfinite(x) and max(finite(gn[:i]) or [0.0]) > 10 * base:
            return s  # grew, then overflowed
    return None


def _worst_dead(probe: dict) -> float:
    """The largest dead share of any ReLU layer at one probe."""
    return max((a.get("dead", 0.0) for a in probe.get("acts", {}).values()), default=0.0)


def units_outlived_blowup(view: RunView) -> set[str]:
    """``{"dead_relu"}`` where dead units are not (only) a blow-up's consequence: the dead-ReLU signal
    holds, and most units of a layer were already dead at a probe before the first blown-up or
    non-finite step, or the blow-up was over (every step finite, the median gradient norm of the last
    10 % of steps within 10× of the first step's) while the units stayed dead, or they were dead in a
    lull between blow-ups (:func:`dead_in_a_lull`)."""
    if not dead_signal(view).fires:
        return set()
    bad = view.bad_steps()
    marks = [s for s in (blowup_step(view), bad[0] if bad else None) if s is not None]
    start = min(marks) if marks else None
    dead_before = start is not None and any(
        p["step"] < start and _worst_dead(p) >= DEAD
        for p in view.probes)
    fin = finite(view.grad_norm)
    tail = fin[-max(1, len(fin) // 10):]
    over = not bad and bool(fin) and median(tail) <= 10 * fin[0]
    return {"dead_relu"} if dead_before or over or dead_in_a_lull(view) else set()


def dead_in_a_lull(view: RunView) -> bool:
    """A probe at which most units of a layer were dead while the run was calm: the nearest logged step
    at or before it has a loss within 2× of the first step's and a gradient norm within 10× of the first
    step's. A blow-up had subsided (or not yet begun) and the net sat with dead units at its starting
    loss (a constant output): they are damage of their own, not the blow-up's turmoil. The loss is asked
    too because dead units starve the gradient: a net 99 % dead at 7× its starting loss has calm gradients."""
    fin, losses = finite(view.grad_norm), finite(view.loss)
    if not fin or not losses or not losses[0] > 0 or not view.steps:
        return False
    start = losses[0]  # the first step's, as the gradient's: a run can blow up from its second step
    for p in view.probes:
        i = bisect.bisect_right(view.steps, p["step"]) - 1
        if i < 0 or not (view.loss[i] <= 2 * start and view.grad_norm[i] <= 10 * fin[0]):  # NaN compares False
            continue
        if _worst_dead(p) >= DEAD:
            return True
    return False


def spared(view: RunView) -> set[str]:
    """What a blow-up (exploding gradients, a NaN) reports beside itself although it would hide it:
    the rate above the range test's range (its cause upstream), units dead before it or after it."""
    return rate_above_range(view) | units_outlived_blowup(view)


@register_rule(CODE, phase="step", suppresses=("lr_too_high", "dead_relu", "saturated_activations",
                                               "vanishing_gradients", "overfitting", "underfitting", "lr_too_low"),
               spares=spared)
def exploding_gradients(view: RunView) -> Finding | None:
    """Gradient norms grow by orders of magnitude and the loss gets worse (or NaN)."""
    if not signal(view):
        return None
    steps, gn = view.steps, view.grad_norm
    base = finite(gn)[0]  # the first step's norm: the growth is measured from the start
    first = blowup_step(view)
    i = steps.index(first)
    peak = max(finite(gn[: i + 1]) or [float("inf")]) if math.isfinite(gn[i]) else float("inf")
    # per-layer gradient norms at the probe nearest the blow-up (AutoTrainer's first/last ratio)
    probe = min(view.probes, key=lambda p: abs(p["step"] - first), default=None)
    layers = {k: v["grad"] for k, v in (probe or {}).get("layers", {}).items()}
    names = list(layers)
    ev = {"grad_norm": gn[i], "first_step_grad_norm": base, "peak_grad_norm": peak,
          "growth": peak / base, "step": first, "lr": view.lr, "grad_clip": view.recipe.train.grad_clip}
    if len(names) >= 2 and layers[names[-1]] > 0:
        ev["first_last_ratio"] = layers[names[0]] / layers[names[-1]]
        ev["layer_grad_norms"] = layer_numbers(layers)
    causes = []
    typ = typical_lr(view.optimizer)
    clip = view.recipe.train.grad_clip
    if view.lr > 3 * typ:
        causes.append(f"learning rate {view.lr:g} too high for {view.optimizer} (typical {typ:g})"
                      f"{'' if clip else ' without clipping'}: each update overshoots and the next gradient "
                      f"is larger (norm ×{peak / base:.3g} by step {first})")
    m = view.recipe.model
    gain = init_gain(view)
    big_init = gain == gain and gain >= 2
    if big_init:
        causes.insert(0, f"{init_desc(view)}: weights {gain:.2g}× larger than He init, so every layer multiplies "
                         f"activations and gradients (Jacobian spectrum > 1) — ×{peak / base:.3g} by step {first}")
        ev["init_gain"] = gain
    depth = len(view.meta.get("layers", []))
    if depth >= 6 and not view.meta.get("norms"):
        causes.append(f"{depth} weight layers without normalisation: gradients multiply along the chain")
    raw = max(abs((view.inputs or {}).get("max", 0.0)), abs((view.inputs or {}).get("min", 0.0)))
    if not view.recipe.data.normalize and raw > 10:
        causes.append(f"unnormalised inputs up to {g(raw)} make the first layer's gradient huge")
    if view.recipe.train.precision == "fp16":
        causes.append("fp16 loss scaling: a wrong scale inflates gradients (unscale before clipping)")
    if not causes:
        causes.append(f"learning rate {view.lr:g} too high for this model and data"
                      f"{'' if clip else ' without gradient clipping'}")
    clip_fix = fix(view, CODE, "clip", {"train.grad_clip": 1.0})
    lr_fix = fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)})
    init_fix = fix(view, CODE, "init", {"model.init": good_init(view)}) if m.init in ("normal", "uniform", "constant") \
        else None
    fx = [lr_fix, clip_fix] if view.lr > 3 * typ else [clip_fix, lr_fix]
    if big_init:
        fx.insert(0, init_fix)
    fx += [fix(view, CODE, "normalize", {"data.normalize": True}) if not view.recipe.data.normalize else None,
           init_fix,
           fix(view, CODE, "batchnorm", {"model.norm": "batch"}),
           fix(view, CODE, "warmup", {"schedule.warmup_steps": 100}),
           fix(view, CODE, "weight_decay", {"optim.weight_decay": 0.01}) if view.recipe.optim.weight_decay == 0
           else None,
           fix(view, CODE, "architecture")]
    return make(view, CODE, "error", first, ev, causes, fixes(*fx))
