"""loss_scale_blowup: the validation loss orders of magnitude above the training loss and above
the uniform-guess loss ln K while the accuracy stays good — over-confident logits.

The cross-entropy of one confidently wrong sample is about its logit margin, so when the logits
grow to hundreds or thousands (large adaptive steps keep scaling them up: RMSprop/Adam at a
high rate), a few wrong validation samples push the mean loss to 10²–10³ while the accuracy hardly
moves — the probabilities the model outputs are worthless although its argmax is right (NLL
degrades while accuracy does not: Guo et al. 2017, "On Calibration of Modern Neural Networks").
Symptom: over the last three epochs, the median of val loss / max(train loss, ln K) is ≥ 10 — a
loss ten times that of guessing uniformly, and ten times what the model scores on the data it
trains on (a plain overfit with a tiny training loss stays below: ln K floors the ratio). Second
signal: the validation accuracy is still well above chance (quality ≥ 0.5): a model that is simply
broken is another rule's finding; and no step's loss was non-finite (an overflow is the NaN
rules'). Cross-entropy classification only (the loss ln K is a guess's).
Notes: 过拟合 解决 (正则化, 早停); 梯度爆炸 原因2 (学习率过大导致参数更新剧烈).
"""

from __future__ import annotations

import math
import statistics

from liandan.doctor.findings import Finding
from liandan.doctor.lr_opinion import recorded
from liandan.doctor.rules._common import fix, fixes, g, lower_lr, make
from liandan.doctor.rules._signal import Signal, above, all_of, flag, signal_of, silent
from liandan.doctor.view import RunView, finite, typical_lr
from liandan.registry import register_rule

CODE = "loss_scale_blowup"
RATIO, QUALITY, WINDOW = 10.0, 0.5, 3
CE_LOSSES = (None, "cross_entropy")


def _epochs(view: RunView) -> list[dict]:
    return [e for e in view.epochs if isinstance(e.get("val"), dict) and isinstance(e.get("train"), dict)
            and "loss" in e["val"] and "loss" in e["train"]]


def loss_ratios(view: RunView) -> list[float]:
    """Per epoch: val loss / max(train loss, ln K)."""
    ref = math.log(max(view.num_classes, 2))
    out = []
    for e in _epochs(view):
        vl, tl = e["val"]["loss"], e["train"]["loss"]
        if vl is None or tl is None or not (math.isfinite(vl) and math.isfinite(tl)):
            continue
        out.append(vl / max(tl, ref))
    return out


def val_quality(view: RunView) -> float:
    acc = finite(view.metric("val", "accuracy"))
    if not acc:
        return float("nan")
    chance = 1.0 / max(view.num_classes, 2)
    return (acc[-1] - chance) / (1 - chance)


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Median over the last 3 epochs of val loss / max(train loss, ln K) ≥ 10, with the validation
    accuracy's quality ≥ 0.5 (cross-entropy classification)."""
    if not view.is_classification or view.recipe.loss.name not in CE_LOSSES:
        return silent("not cross-entropy classification")
    r = loss_ratios(view)
    if not r:
        return silent("no epoch with train and val loss")
    ratio = statistics.median(r[-WINDOW:])
    # every step finite: logits that overflowed to a NaN or inf loss are the non-finite rules' story
    # (plain SGD at 6 on breast_cancer skips 9 steps, and its finite epochs' val loss is 10³× ln 2)
    return all_of(flag("every loss finite", not view.bad_steps()),
                  above("val_loss_over_reference", ratio, RATIO, strict=False),
                  above("val_quality", val_quality(view), QUALITY, "odds", strict=False))


@register_rule(CODE, phase="end", modes=("train",))
def loss_scale_blowup(view: RunView) -> Finding | None:
    """The validation loss is orders of magnitude above the training and uniform-guess losses while
    the accuracy holds: the logits have blown up (over-confident predictions)."""
    if not signal(view):
        return None
    eps = _epochs(view)
    last = eps[-1]
    ref = math.log(max(view.num_classes, 2))
    ratio = statistics.median(loss_ratios(view)[-WINDOW:])
    vl = [e["val"]["loss"] for e in eps]
    o = view.recipe.optim
    ev = {"val_loss": last["val"]["loss"], "train_loss": last["train"]["loss"], "uniform_loss": ref,
          "ratio": ratio, "val_accuracy": last["val"].get("accuracy"), "train_accuracy": last["train"].get("accuracy"),
          "val_loss_min": min(vl), "lr": view.lr, "optimizer": view.optimizer}
    rng = recorded(view)
    causes = [f"validation loss {g(last['val']['loss'])} is {ratio:.3g}× the larger of the training loss "
              f"({g(last['train']['loss'])}) and a uniform guess's ln {view.num_classes} = {ref:.3g}, while "
              f"validation accuracy is {last['val'].get('accuracy', float('nan')):.2f}: the logits have grown so large "
              "that the few wrong predictions are made with near-certainty"]
    high = rng["high"] if rng else 3 * typical_lr(o.name)
    if view.lr > high:
        causes.append(f"learning rate {view.lr:g} is high for {o.name} (usable up to {high:.3g}): each step scales "
                      "the logits up further")
    if o.weight_decay < 1e-3 and not view.recipe.loss.l2:
        causes.append(f"no weight decay (weight_decay {o.weight_decay:g}) holds the weights, and so the logits, "
                      "in check")
    best = vl.index(min(vl))
    if best < len(vl) - 1:
        causes.append(f"the validation loss was lowest at epoch {best + 1} ({g(vl[best])}) and training went on")
    smoothing = view.recipe.loss.options.get("label_smoothing", 0.0) or 0.0
    if not smoothing:
        causes.append("no label smoothing: cross-entropy keeps rewarding ever larger logit margins")
    es = view.recipe.train.early_stopping
    fx = fixes(
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}) if view.lr > high else None,
        fix(view, CODE, "label_smoothing", {"loss.label_smoothing": 0.1}) if not smoothing else None,
        fix(view, CODE, "weight_decay", {"optim.weight_decay": max(0.05, o.weight_decay * 10)}),
        fix(view, CODE, "early_stopping", {"train.early_stopping": {"monitor": "val.loss", "patience": 5}})
        if es is None or es.monitor != "val.loss" else None,
        fix(view, CODE, "clip", {"train.grad_clip": 1.0}) if not view.recipe.train.grad_clip else None,
        fix(view, CODE, "calibrate"),
    )
    return make(view, CODE, "warning", last.get("step"), ev, causes, fx)
