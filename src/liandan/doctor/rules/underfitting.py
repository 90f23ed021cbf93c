"""underfitting: the model does not even fit the training data.

Symptom: the final quality (accuracy over chance, or R²) is below 0.6 (R² 0.3) — AutoTrainer's "not
converge" (max accuracy < Θ = 0.7 on balanced sets) — on training and validation alike; in the
short probing run of ``liandan doctor RECIPE``, failing to overfit one small batch
(TheDeepChecker's pre-training check). Generic: reported only when no specific rule (learning
rate, gradients, activations, init, data, loss) explains the run.
Notes: 欠拟合 — 原因 1–6 (模型太简单, 特征不足, 学习率太低, 训练不充分, 正则化太强, 数据噪声大),
解决 (增加模型容量, 提高学习率, 训练更久, 减少正则化; 使用复杂的模型, 特征工程, 修改 optim).
"""

from __future__ import annotations

import math

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, hidden_patch, hidden_widths, make, raise_lr
from liandan.doctor.rules._signal import Signal, all_of, below, flag, signal_of
from liandan.doctor.view import RunView, finite, typical_lr
from liandan.registry import register_rule

CODE = "underfitting"


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """The final quality below the bar (0.6 over chance, R² 0.3), on the training split too when it
    was evaluated (a model that fits its training data but not the validation data is not
    underfitting: a noisy target — diabetes' validation R² swings 0.25-0.5 by split — or a gap);
    a probing run: the failed one-batch overfit check."""
    if view.mode == "probe":
        oc = view.overfit_check
        return flag("overfit check failed", bool(oc) and not oc.get("passed", True))
    low = below("quality", view.quality(), view.poor(), "odds")
    train_q = view.quality(split="train")
    if math.isnan(train_q):
        return low
    return all_of(low, below("train_quality", train_q, view.poor(), "odds"))


@register_rule(CODE, phase="end", generic=True)
def underfitting(view: RunView) -> Finding | None:
    """Training and validation performance both stay low (the model cannot fit the data)."""
    if not signal(view):
        return None
    oc = view.overfit_check
    failed_check = bool(oc) and not oc.get("passed", True)
    q = view.quality()
    m, o, t = view.recipe.model, view.recipe.optim, view.recipe.train
    tl = finite(view.metric("train", "loss"))
    still = len(tl) >= 2 and tl[-1] < 0.97 * tl[-2]
    ev = {"quality": q, "loss_drop": view.loss_drop(), "epochs": len(view.epochs), "params": view.meta.get("params"),
          "still_improving": still}
    if oc:
        ev["overfit_check"] = oc
    hidden, scalar = hidden_widths(view)
    dropout = float(m.options.get("dropout", 0) or 0)
    causes: list[tuple[float, str]] = []  # (rank, text): the strongest evidence first
    if failed_check:
        causes.append((0, f"cannot even overfit {oc.get('samples')} samples in {oc.get('steps')} steps "
                          f"(loss {g(oc.get('loss_start', 0))} → {g(oc.get('loss_end', 0))}): a capacity or wiring "
                          "problem, not a generalisation one"))
    if hidden and min(hidden) <= max(4, view.num_classes // 2):
        causes.append((1, f"the model is too small: a layer of {min(hidden)} units for {view.num_classes} "
                          f"outputs ({view.meta.get('params', 0):,} parameters)"))
    if dropout >= 0.5:
        causes.append((1, f"dropout {dropout:g} removes most of the signal: regularisation too strong"))
    if o.weight_decay >= 0.1 or view.recipe.loss.l2 >= 1e-2 or view.recipe.loss.l1 >= 1e-3:
        causes.append((1, f"regularisation too strong (weight decay {o.weight_decay:g}, L2 {view.recipe.loss.l2:g},"
                          f" L1 {view.recipe.loss.l1:g}) pulls the weights to zero"))
    if still:
        causes.append((2, f"the training loss was still falling ({g(tl[-2])} → {g(tl[-1])}) when training "
                          f"stopped after {len(tl)} epochs: not trained long enough"))
    if o.lr < typical_lr(o.name) / 10:
        causes.append((2, f"learning rate {o.lr:g} is low for {o.name}"))
    causes.append((3, "the features may not carry enough information, or the labels are noisy"))
    causes.sort(key=lambda c: c[0])
    wider = [max(64, h * 4) for h in hidden] if hidden else None
    fx = fixes(
        fix(view, CODE, "bigger", {"model.hidden": hidden_patch(wider, scalar)}) if wider and min(hidden) <= 16
        else None,
        fix(view, CODE, "less_dropout", {"model.dropout": 0.1}) if dropout >= 0.5 else None,
        fix(view, CODE, "less_decay", {"optim.weight_decay": 0.01}) if o.weight_decay >= 0.1 else None,
        fix(view, CODE, "less_decay", {"loss.l2": 0.0, "loss.l1": 0.0}) if view.recipe.loss.l2 or view.recipe.loss.l1
        else None,
        fix(view, CODE, "longer", {"train.epochs": t.epochs * 3}) if still else None,
        fix(view, CODE, "raise_lr", {"optim.lr": raise_lr(view)}) if o.lr < typical_lr(o.name) else None,
        fix(view, CODE, "bigger", {"model.hidden": (wider or [128, 64]) + [max(wider or [64]) // 2]})
        if not scalar and ("hidden" in m.options or m.name == "mlp") else None,
        fix(view, CODE, "optimizer", {"optim.name": "adamw", "optim.lr": 1e-3}) if o.name != "adamw" else None,
        fix(view, CODE, "features"),
    )
    return make(view, CODE, "warning", None, ev, [c[1] for c in causes], fx)
