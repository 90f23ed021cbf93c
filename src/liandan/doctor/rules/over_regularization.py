"""over_regularization: regularisation so strong the model cannot fit even its training data.

Symptom: the training loss stays near the loss of a uniform guess (≥ 0.35 · ln K at the last epoch:
the predicted probabilities stay flat), the training accuracy is well below what a model that fits
reaches (quality < 0.95), and train and validation accuracy agree (gap < 0.05: not a generalisation
problem — or the training accuracy itself fell ≥ 0.1 below its best epoch's, so the gap is the
running training average lagging a fit being lost). Second signal — the recipe says why: dropout ≥
0.5, an L2 penalty ≥ 1e-2, L1 ≥ 1e-3, or weight decay ≥ 0.1 (coupled to the gradient of SGD), ≥ 0.02
(coupled to an adaptive optimizer's: Adam, RMSprop — :func:`decay_threshold`), ≥ 1 (decoupled:
AdamW, AdaBelief).
More specific than ``underfitting`` (which it suppresses): it names the cause;
it also hides ``lr_too_high``, whose update/weight ratio tiny weights inflate, and — once the probe
confirmed the cause — the vanishing gradients and dead ReLUs of weights pinned near zero.
Third, the doctor tests the cause (an ablation probe, :mod:`._retrain`, a ``reg_probe`` record): the
recipe retrained with the heavy regularisers removed, for the run's steps, must end ≥ 0.1 quality
(accuracy over chance, or R²) above the run, or ≥ 0.05 while leaving at most half the run's
shortfall (:func:`._retrain.gain`), or (classification) lose the symptom — its training loss below
0.35 · ln K. Where train and validation disagree (a gap the running training average does not
explain), only that quality gain names the regulariser: a run that overfits would not gain from less
of it (weight decay 0.2 on a BatchNorm ResNet trains to 0.62 and evaluates at 0.28; at 5e-4 it
reaches 0.96). A rate too low, raw inputs or too small a model hold the fit back just as well, and
then removing the regulariser does not help. The probe trains only when the other checks fired;
where none can run (no regulariser a recipe key removes), classification falls back on the cheap
checks.
Regression has no uniform guess to compare with, and a noisy target (diabetes tops out near R² 0.5)
looks the same as a held-back fit: there the cheap checks are only that something is left to fit
(training R² < 0.95) with train and validation R² agreeing (gap < 0.1, R² below 0 counted as 0), and
the probe decides (weight decay holding a GRU at R² 0.89 that fits 0.98 without it).
Notes: 欠拟合 原因 5 (正则化太强: dropout、L2 过重); 解决 (减少正则化).
"""

from __future__ import annotations

import math

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, make
from liandan.doctor.rules._retrain import ablation, cached, gain, measured
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, below, signal_of, silent
from liandan.doctor.view import ADAPTIVE, RunView
from liandan.registry import register_rule

CODE = "over_regularization"
DROPOUT, L2, L1 = 0.5, 1e-2, 1e-3
DECAY_COUPLED, DECAY_DECOUPLED, DECAY_ADAPTIVE = 0.1, 1.0, 0.02
LOSS_SHARE, QUALITY, GAP = 0.35, 0.95, 0.05
FALL = 0.1  # training accuracy this far below its best epoch's: the fit is being lost, not over-learned
R2_GAP = 0.1  # regression: train/val R² agreement
R2_LEFT = 0.05  # regression: training variance left unexplained before the probe is asked (R² < 0.95)
DECOUPLED = ("adamw", "adabelief")
RECORD = "reg_probe"


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
    """Heavy weight decay: ≥ 1 decoupled (AdamW), ≥ 0.1 coupled to plain or momentum SGD, ≥ 0.02 (above
    the recipe's default 0.01) coupled to an adaptive optimizer — Adam divides the decay term by the
    gradient's running scale like the data gradient, so where the data gradient is small the pull to
    zero is a full step of ~lr per weight, not wd × lr (Loshchilov & Hutter 2019, §2: L2 and weight
    decay differ under Adam). The ablation probe then decides whether the decay holds the fit back."""
    o = view.recipe.optim
    if o.name in DECOUPLED and o.options.get("decoupled", True):
        return DECAY_DECOUPLED
    return DECAY_ADAPTIVE if o.name in ADAPTIVE else DECAY_COUPLED


def heavy(view: RunView) -> Signal:
    o, loss = view.recipe.optim, view.recipe.loss
    return any_of(above("dropout", dropout(view), DROPOUT, "odds", strict=False),
                  above("l2", loss.l2, L2, strict=False), above("l1", loss.l1, L1, strict=False),
                  above("weight_decay", o.weight_decay, decay_threshold(view), strict=False), name="heavy")


def _last(view: RunView, key: str = "accuracy") -> dict | None:
    eps = [e for e in view.epochs if isinstance(e.get("train"), dict) and isinstance(e.get("val"), dict)
           and key in e["train"] and key in e["val"]]
    return eps[-1] if eps else None


def unregularised(view: RunView) -> dict:
    """The recipe overrides that remove every heavy regulariser (what the ablation probe trains)."""
    o, loss = view.recipe.optim, view.recipe.loss
    patch: dict = {}
    if dropout(view) >= DROPOUT and "dropout" in view.recipe.model.options:
        patch["model.dropout"] = 0.0
    if loss.l2 >= L2:
        patch["loss.l2"] = 0.0
    if loss.l1 >= L1:
        patch["loss.l1"] = 0.0
    if o.weight_decay >= decay_threshold(view):
        patch["optim.weight_decay"] = 0.0
    return patch


def _train_probe(view: RunView) -> dict:
    patch = unregularised(view)
    if not patch:
        return {"type": RECORD, "skipped": "no regulariser the recipe can remove"}
    return ablation(view, RECORD, patch)


def _regression(view: RunView) -> Signal:
    """Heavy, train R² < 0.95 with val R² within 0.1 of it, and the probe without the regulariser
    ≥ 0.1 R² better on validation — or ≥ 0.05 better while leaving at most half the run's
    unexplained variance (0.89 → 0.98: the regulariser held back most of what was left). The probe
    trains only when the rest fired."""
    last = _last(view, "r2")
    if last is None:
        return silent("no epoch with train and val R²")
    tr, va = last["train"]["r2"], last["val"]["r2"]
    # an R² below 0 explains nothing, like 0: a validation set whose mean differs is no gap
    cheap = all_of(heavy(view), above("train_unexplained", 1.0 - tr, R2_LEFT),
                   below("r2_gap", max(tr, 0.0) - max(va, 0.0), R2_GAP))
    if not cheap.fires:
        return cheap
    rec = cached(view, RECORD, _train_probe)
    if rec is None or rec.get("probe_quality") is None:
        return silent("no ablation probe")
    return all_of(cheap, gain(view, rec, "unregularised_r2_gain"))


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Train loss ≥ 0.35 · ln K, train quality < 0.95, dropout ≥ 0.5, L2 ≥ 1e-2, L1 ≥ 1e-3 or heavy weight
    decay, and the probe confirms; with train − val accuracy ≥ 0.05 (and a training accuracy that
    did not fall ≥ 0.1) only by a quality gain (regression: :func:`_regression`)."""
    if view.is_regression:
        return _regression(view)
    if not view.is_classification:
        return silent("neither classification nor regression")
    last = _last(view)
    if last is None:
        return silent("no epoch with train and val accuracy")
    chance = 1.0 / max(view.num_classes, 2)
    tr_acc, va_acc = last["train"]["accuracy"], last["val"]["accuracy"]
    share = last["train"]["loss"] / math.log(max(view.num_classes, 2))
    # train − val gap: a generalisation problem, unless the training accuracy itself is falling — then
    # the gap is the epoch's running training average lagging a fit the penalty keeps taking away
    # (keras#4359: L2 pulls a digits MLP from 0.72 to 0.38 training accuracy, validation 0.24 at the end)
    best_tr = max(e["train"]["accuracy"] for e in view.epochs
                  if isinstance(e.get("train"), dict) and "accuracy" in e["train"])
    agree = any_of(below("accuracy_gap", tr_acc - va_acc, GAP),
                   above("train_accuracy_fall", best_tr - tr_acc, FALL, strict=False), name="not_overfitting")
    held = all_of(heavy(view), above("train_loss_over_uniform", share, LOSS_SHARE),
                  below("train_quality", (tr_acc - chance) / (1 - chance), QUALITY, "odds"))
    if not held.fires:
        return all_of(held, agree)
    rec = cached(view, RECORD, _train_probe)
    if rec is None or rec.get("probe_quality") is None:
        return all_of(held, agree)  # nothing the probe can remove or rebuild: the cheap checks decide
    better = gain(view, rec, "unregularised_quality_gain")
    if not agree.fires:
        # a gap the running training average does not explain: only a clearly better validation score
        # without the regulariser names it (a run that overfits would not gain from less of it)
        return all_of(held, better, name="gap_but_better_without")
    # the cause confirmed: without the regulariser the model generalises better, or the symptom
    # itself goes (its training loss falls below the bar; dropout's noise no longer inflates it)
    probe_loss = rec.get("probe_train_loss")
    probe_share = (float("inf") if probe_loss is None else probe_loss) / math.log(max(view.num_classes, 2))
    return all_of(held, agree, any_of(better, below("unregularised_train_loss_over_uniform", probe_share, LOSS_SHARE),
                                      name="probe"))


CONSEQUENCES = ("vanishing_gradients", "dead_relu")


def unconfirmed(view: RunView) -> set[str]:
    """The consequences spared from suppression when no ablation probe ran (the cheap checks alone
    named the regulariser): then they may be causes in their own right."""
    return set(CONSEQUENCES) if measured(view, RECORD) is None else set()


# lr_too_high too: weights held tiny inflate the update/weight ratio, and a loss that cannot descend
# at any rate flattens the range test's curve — the regulariser, not the rate (a lower rate leaves
# the penalty's minimiser where it is). lr_too_low likewise: a faster rate can make up part of what
# dropout's noise costs, but the regulariser is what holds the fit back. Weights a penalty pins near
# zero also starve the gradients and silence ReLU units: with the probe showing the run recovers
# without the regulariser, those are its consequences, not further causes.
@register_rule(CODE, phase="end", modes=("train",),
               suppresses=("underfitting", "lr_too_high", "lr_too_low", *CONSEQUENCES),
               spares=unconfirmed)
def over_regularization(view: RunView) -> Finding | None:
    """Dropout or weight penalties so strong the model cannot fit its training data: train and
    validation agree, both held low (a training loss near a uniform guess's), and a probe without
    the regulariser fits better."""
    if not signal(view):
        return None
    o, loss = view.recipe.optim, view.recipe.loss
    p = dropout(view)
    ev = {"dropout": p, "weight_decay": o.weight_decay, "l2": loss.l2, "l1": loss.l1, "epochs": len(view.epochs)}
    if view.is_regression:
        last = _last(view, "r2")
        rec = cached(view, RECORD, _train_probe)
        ev.update(train_r2=last["train"]["r2"], val_r2=last["val"]["r2"], probe_val_r2=rec["probe_quality"],
                  probe_patch=rec["patch"], probe_steps=rec["steps"])
        causes = [f"training R² {last['train']['r2']:.2f} is no better than validation R² {last['val']['r2']:.2f}: "
                  "the model is held back from fitting, not overfitting; the same recipe without "
                  f"{', '.join(rec['patch'])} reaches validation R² {rec['probe_quality']:.2f} in {rec['steps']} steps"]
    else:
        last = _last(view)
        k = max(view.num_classes, 2)
        ev.update(train_loss=last["train"]["loss"], uniform_loss=math.log(k),
                  train_accuracy=last["train"]["accuracy"], val_accuracy=last["val"]["accuracy"])
        causes = [f"the training loss {g(last['train']['loss'])} stays near a uniform guess's ln {k} = "
                  f"{math.log(k):.3g} and training accuracy ({last['train']['accuracy']:.2f}) is no better than "
                  f"validation ({last['val']['accuracy']:.2f}): the model is held back from fitting, not overfitting"]
        rec = measured(view, RECORD)
        if rec is not None:
            ev.update(probe_quality=rec["probe_quality"], probe_patch=rec["patch"], probe_steps=rec["steps"])
            causes.append(f"the same recipe without {', '.join(rec['patch'])} reaches quality "
                          f"{rec['probe_quality']:.2f} (run: {max(view.quality(), 0.0):.2f}) in {rec['steps']} steps")
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
        fix(view, CODE, "less_decay", {"optim.weight_decay": min(0.01, decay_threshold(view) / 10)})
        if o.weight_decay >= decay_threshold(view)
        else None,
        fix(view, CODE, "wider"),
    )
    return make(view, CODE, "warning", last.get("step"), ev, causes, fx)
