"""over_regularization: regularisation so strong the model cannot fit even its training data.

Symptom: the training loss stays near the loss of a uniform guess (≥ 0.35 · ln K at the last
epoch: the predicted probabilities stay flat), the training accuracy is well below what a model
that fits reaches (quality < 0.95), and train and validation accuracy agree (gap < 0.05: not a
generalisation problem). Second signal — the recipe says why: dropout ≥ 0.5, an L2 penalty ≥ 1e-2,
L1 ≥ 1e-3, or weight decay ≥ 0.1 (coupled to the gradient: SGD, Adam, RMSprop) / ≥ 1 (decoupled:
AdamW, AdaBelief). More specific than ``underfitting`` (which it suppresses): it names the cause.
Classification only (ln K is a guess's cross-entropy).
Notes: 欠拟合 原因 5 (正则化太强: dropout、L2 过重); 解决 (减少正则化).
"""

from __future__ import annotations

import math

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, make
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, below, signal_of, silent
from liandan.doctor.view import RunView
from liandan.registry import register_rule

CODE = "over_regularization"
DROPOUT, L2, L1 = 0.5, 1e-2, 1e-3
DECAY_COUPLED, DECAY_DECOUPLED = 0.1, 1.0
LOSS_SHARE, QUALITY, GAP = 0.35, 0.95, 0.05
DECOUPLED = ("adamw", "adabelief")


def dropout(view: RunView) -> float:
    """The largest dropout rate in the model (its modules, else the recipe's option)."""
    opt = view.model_option("dropout", 0.0)
    rates = list(view.meta.get("dropout", []))
    if isinstance(opt, (int, float)):
        rates.append(float(opt))
    elif isinstance(opt, list):
        rates += [float(x) for x in opt if isinstance(x, (int, float))]
    return max(rates, default=0.0)


def decay_threshold(view: RunView) -> float:
    o = view.recipe.optim
    decoupled = o.name in DECOUPLED and o.options.get("decoupled", True)
    return DECAY_DECOUPLED if decoupled else DECAY_COUPLED


def heavy(view: RunView) -> Signal:
    o, loss = view.recipe.optim, view.recipe.loss
    return any_of(above("dropout", dropout(view), DROPOUT, "odds", strict=False),
                  above("l2", loss.l2, L2, strict=False), above("l1", loss.l1, L1, strict=False),
                  above("weight_decay", o.weight_decay, decay_threshold(view), strict=False), name="heavy")


def _last(view: RunView) -> dict | None:
    eps = [e for e in view.epochs if isinstance(e.get("train"), dict) and isinstance(e.get("val"), dict)
           and "accuracy" in e["train"] and "accuracy" in e["val"]]
    return eps[-1] if eps else None


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Train loss ≥ 0.35 · ln K, train quality < 0.95, train − val accuracy < 0.05, and dropout ≥ 0.5,
    L2 ≥ 1e-2, L1 ≥ 1e-3 or heavy weight decay."""
    if not view.is_classification:
        return silent("not classification")
    last = _last(view)
    if last is None:
        return silent("no epoch with train and val accuracy")
    chance = 1.0 / max(view.num_classes, 2)
    tr_acc, va_acc = last["train"]["accuracy"], last["val"]["accuracy"]
    share = last["train"]["loss"] / math.log(max(view.num_classes, 2))
    return all_of(heavy(view), above("train_loss_over_uniform", share, LOSS_SHARE),
                  below("train_quality", (tr_acc - chance) / (1 - chance), QUALITY, "odds"),
                  below("accuracy_gap", tr_acc - va_acc, GAP))


@register_rule(CODE, phase="end", modes=("train",), suppresses=("underfitting",))
def over_regularization(view: RunView) -> Finding | None:
    """Dropout or weight penalties so strong the model cannot fit its training data: train and
    validation accuracy agree, both held low, with a training loss near a uniform guess's."""
    if not signal(view):
        return None
    last = _last(view)
    k = max(view.num_classes, 2)
    o, loss = view.recipe.optim, view.recipe.loss
    p = dropout(view)
    ev = {"train_loss": last["train"]["loss"], "uniform_loss": math.log(k),
          "train_accuracy": last["train"]["accuracy"], "val_accuracy": last["val"]["accuracy"], "dropout": p,
          "weight_decay": o.weight_decay, "l2": loss.l2, "l1": loss.l1, "epochs": len(view.epochs)}
    causes = [f"the training loss {g(last['train']['loss'])} stays near a uniform guess's ln {k} = "
              f"{math.log(k):.3g} and training accuracy ({last['train']['accuracy']:.2f}) is no better than "
              f"validation ({last['val']['accuracy']:.2f}): the model is held back from fitting, not overfitting"]
    if p >= DROPOUT:
        causes.append(f"dropout {p:g} zeroes {100 * p:.0f} % of the units at every step: the signal that reaches "
                      "the output is mostly noise (正则化太强)")
    if loss.l2 >= L2 or loss.l1 >= L1:
        causes.append(f"the weight penalty (L2 {loss.l2:g}, L1 {loss.l1:g}) outweighs the data loss and pulls every "
                      "weight towards zero")
    if o.weight_decay >= decay_threshold(view):
        causes.append(f"weight decay {o.weight_decay:g} for {o.name} shrinks the weights faster than the data "
                      "can grow them")
    fx = fixes(
        fix(view, CODE, "less_dropout", {"model.dropout": round(min(0.2, p / 4), 2)}) if p >= DROPOUT
        and "dropout" in view.recipe.model.options else None,
        fix(view, CODE, "less_penalty", {"loss.l2": loss.l2 / 100 if loss.l2 >= L2 else loss.l2,
                                         "loss.l1": loss.l1 / 100 if loss.l1 >= L1 else loss.l1})
        if loss.l2 >= L2 or loss.l1 >= L1 else None,
        fix(view, CODE, "less_decay", {"optim.weight_decay": 0.01}) if o.weight_decay >= decay_threshold(view)
        else None,
        fix(view, CODE, "wider"),
    )
    return make(view, CODE, "warning", last.get("step"), ev, causes, fx)
