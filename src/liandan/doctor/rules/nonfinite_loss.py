"""nonfinite_loss: the loss or the gradient became NaN/inf.

Detection as DeepLocalize (Wardat et al. ICSE 2021) and AutoTrainer's NaN check: any step whose
loss or global gradient norm is not finite (the trainer skipped its update) — or an epoch's evaluated
loss that is (finite training steps, an inf on validation: a probability of exactly 0 under the
cross-entropy, an activation that overflows only on inputs training never saw). The causes are
ranked from what preceded the first bad step: a gradient norm that grew by orders of magnitude
points at the learning rate (notes: 梯度爆炸 原因 2), huge raw inputs at missing normalisation,
low precision at AMP loss scaling (notes: 梯度爆炸 原因 4, 解决 6).
"""

from __future__ import annotations

import math

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, good_init, init_gain, lower_lr, make
from liandan.doctor.rules._signal import Signal, any_of, count, signal_of
from liandan.doctor.rules.exploding_gradients import spared
from liandan.doctor.view import RunView, finite, typical_lr
from liandan.registry import register_rule

CODE = "nonfinite_loss"


def bad_evals(view: RunView) -> list[tuple[int, str, float, int | None]]:
    """(epoch, split, loss, step) of every evaluated epoch loss that is NaN or inf."""
    out = []
    for e in view.epochs:
        for split, m in e.items():
            lo = m.get("loss") if isinstance(m, dict) else None
            if isinstance(lo, (int, float)) and not math.isfinite(lo):
                out.append((e.get("epoch", 0), split, float(lo), e.get("step")))
    return out


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Steps whose loss or gradient norm was not finite, or epochs whose evaluated loss was not
    (any one is a finding)."""
    return any_of(count("bad_steps", len(view.bad_steps())), count("nonfinite_eval_losses", len(bad_evals(view))))


@register_rule(CODE, phase="step", suppresses=("lr_too_high", "dead_relu", "saturated_activations",
                                               "vanishing_gradients", "overfitting", "underfitting", "lr_too_low"),
               spares=spared)  # the rate above the range test's range, units dead before: reported beside
def nonfinite_loss(view: RunView) -> Finding | None:
    """The loss or the gradients became NaN/inf (updates skipped; the run may have diverged)."""
    if not signal(view):
        return None
    bad = view.bad_steps()
    if not bad:
        return _eval_only(view)
    first = bad[0]
    steps, loss, gn = view.steps, view.loss, view.grad_norm
    i = steps.index(first)
    before = finite(gn[max(0, i - 5):i])
    start = (finite(gn) or [0.0])[0]
    peak = max(before) if before else float("nan")
    growth = peak / start if before and start > 0 else float("nan")
    inp = view.inputs or {}
    lab = inp.get("labels") or {}
    ev = {"first_bad_step": first, "bad_steps": len(bad), "steps": len(steps), "lr": view.lr,
          "loss_at_first_bad": loss[i], "grad_norm_at_first_bad": gn[i],
          "last_finite_loss": (finite(loss[:i]) or [float("nan")])[-1], "grad_norm_before": peak,
          "grad_growth": growth, "status": view.status}
    causes, high_lr = [], view.lr > 3 * typical_lr(view.optimizer)
    clip = view.recipe.train.grad_clip
    if math.isfinite(growth) and growth > 30:
        causes.append(f"the gradient norm grew ×{growth:.3g} (from {g(start)} to {g(peak)}) in the steps before "
                      f"step {first}: the updates diverged — learning rate {view.lr:g} too high for "
                      f"{view.optimizer}{'' if clip else ' without gradient clipping'}")
    elif high_lr:
        causes.append(f"learning rate {view.lr:g} is far above the usual {typical_lr(view.optimizer):g} "
                      f"for {view.optimizer}: one update overshoots to huge weights")
    raw = max(abs(inp.get("max", 0.0)), abs(inp.get("min", 0.0)))
    if not view.recipe.data.normalize and raw > 10:
        causes.append(f"inputs are not normalised and reach {g(raw)}: activations and the loss overflow")
    if lab.get("kind") == "value" and max(abs(lab.get("max", 0)), abs(lab.get("min", 0))) > 10:
        causes.append(f"regression targets reach {g(max(abs(lab['max']), abs(lab['min'])))}: "
                      "squared errors of that size overflow")
    if any(not math.isfinite(inp.get(k, 0.0)) for k in ("min", "max")):
        causes.insert(0, "the inputs themselves contain NaN or inf")
    if view.recipe.train.precision != "fp32":
        causes.append(f"{view.recipe.train.precision} mixed precision: values beyond its range overflow "
                      "(fp16 max 65504) unless the loss is scaled")
    gain = init_gain(view)
    big_init = gain == gain and gain >= 2
    if big_init:
        causes.insert(0, f"initial weights {gain:.2g}× larger than He init ({view.recipe.model.init}, std "
                         f"{view.recipe.model.init_std:g}) multiply activations layer after layer until they overflow")
        ev["init_gain"] = gain
    if not causes:
        causes.append("a numerical error in the forward pass or the loss (log of 0, division by 0)")
    lr_fix = fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)})
    clip_fix = fix(view, CODE, "clip", {"train.grad_clip": 1.0})
    fx = [lr_fix, clip_fix] if high_lr or not clip else [clip_fix, lr_fix]
    if big_init:
        fx.insert(0, fix(view, CODE, "init", {"model.init": good_init(view)}))
    if not view.recipe.data.normalize:
        fx.insert(0, fix(view, CODE, "normalize", {"data.normalize": True}))
    fx += [fix(view, CODE, "fp32", {"train.precision": "fp32"}),
           fix(view, CODE, "init", {"model.init": good_init(view)}) if view.recipe.model.init in
           ("normal", "uniform", "constant") else None,
           fix(view, CODE, "warmup", {"schedule.warmup_steps": 100}),
           fix(view, CODE, "check_data")]
    return make(view, CODE, "error", first, ev, causes, fixes(*fx))


def _eval_only(view: RunView) -> Finding:
    """Every training step was finite, but an evaluated loss was not."""
    evals = bad_evals(view)
    epoch, split, lo, step = evals[0]
    ev = {"bad_steps": 0, "nonfinite_evals": [{"epoch": e, "split": sp, "loss": v} for e, sp, v, _ in evals],
          "lr": view.lr, "status": view.status}
    causes = [f"every training step's loss was finite, but the {split} loss of epoch {epoch} is {lo}: the model "
              "outputs, on samples it did not train on, a probability of exactly 0 for the true class (log 0 = −inf) "
              "or values that overflow"]
    if view.lr > 3 * typical_lr(view.optimizer):
        causes.append(f"learning rate {view.lr:g} (usual {typical_lr(view.optimizer):g} for {view.optimizer}) "
                      "drives the logits to extreme confidence")
    if not view.recipe.data.normalize:
        causes.append("inputs are not normalised: unseen samples can push activations far past the training range")
    fx = fixes(
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}),
        fix(view, CODE, "clip", {"train.grad_clip": 1.0}) if not view.recipe.train.grad_clip else None,
        fix(view, CODE, "normalize", {"data.normalize": True}) if not view.recipe.data.normalize else None,
        fix(view, CODE, "label_smoothing", {"loss.label_smoothing": 0.1}) if view.is_classification else None,
        fix(view, CODE, "check_data"),
    )
    return make(view, CODE, "error", step, ev, causes, fx)
