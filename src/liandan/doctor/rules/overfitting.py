"""overfitting: training error small, validation error large and growing.

Symptom (AutoTrainer's overfit check, Zhang et al. ICSE 2021): train − val accuracy ≥ 0.10, or
≥ 0.07 once train accuracy > 0.9; for regression, val loss ≥ 1.5× train loss. Second signal
(UMLAUT's single-epoch rule is too noisy, so we need a trend): the validation loss ended ≥ 10 %
above its minimum, reached at least two epochs earlier, while the training loss kept falling —
or, for classification, had already saturated below 5 % of a uniform guess's ln K (the training
set is memorised: 0.006 → 0.007 is no rise); or the validation loss stalled at its minimum for
≥ 5 epochs and a quarter of the run while the training loss fell ≥ 2× more; or (classification)
the training set is memorised — training loss below 5 % of ln K, or a training error at most a
tenth of the validation error (yolov7#1241: 1.1 % against 30 %) — while validation accuracy trails
by ≥ 0.1 and by ≥ 3 standard errors of the validation accuracy (√(p(1−p)/n): 0.1 is two samples
of an 18-sample validation set, 85 of digits' 853), however the validation loss moved (autokeras#367:
90 training digits, validation loss still creeping down, 16 points of accuracy lost). A training
loss that climbs back up is a bouncing rate, ``lr_too_high``'s finding.
A run whose early stopping restored the best weights has already been treated.
Notes: 过拟合 — 原因 1–5 (数据太少, 模型太复杂, 正则化不足, 过多 epoch, 分布偏差),
解决 (数据增强, L1/L2/dropout, 早停, 降低复杂度, 更多数据).
"""

from __future__ import annotations

import math

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, hidden_patch, hidden_widths, make
from liandan.doctor.rules._signal import Signal, above, all_of, any_of, below, exceeds, flag, signal_of, silent
from liandan.doctor.view import RunView, finite
from liandan.registry import register_rule

CODE = "overfitting"


def _epochs(view: RunView) -> list[dict]:
    return [e for e in view.epochs if isinstance(e.get("val"), dict) and isinstance(e.get("train"), dict)]


def _gap(view: RunView, eps: list[dict]) -> tuple[float, float, float]:
    """(train metric, val metric, gap): accuracy difference, or val/train loss for regression."""
    last = eps[-1]
    if view.is_classification:
        tr, va = last["train"].get("accuracy", 0.0), last["val"].get("accuracy", 0.0)
        return tr, va, tr - va
    tr, va = last["train"]["loss"], last["val"]["loss"]
    return tr, va, va / tr if tr > 0 else float("inf")


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Val loss ≥ 1.1× its minimum of ≥ 2 epochs before while the train loss held, and a train/val
    gap ≥ 0.10 accuracy (0.07 above 0.9 train accuracy) or val loss ≥ 1.5× train loss."""
    eps = _epochs(view)
    if len(eps) < 3:
        return silent("fewer than three epochs")
    es = view.recipe.train.early_stopping
    if es and es.restore_best and view.status == "stopped_early":
        return silent("early stopping restored the best weights")
    vl = [e["val"]["loss"] for e in eps]
    tl = [e["train"]["loss"] for e in eps]
    if len(finite(vl)) != len(vl) or len(finite(tl)) != len(tl):
        return silent("non-finite epoch loss")
    best = vl.index(min(vl))
    tr, _, gap = _gap(view, eps)
    big = (above("accuracy_gap", gap, 0.07 if tr > 0.9 else 0.10, "odds", strict=False) if view.is_classification
           else above("val_over_train_loss", gap, 1.5, strict=False))
    held = [exceeds("train_loss_fell", tl[best], tl[-1])]
    if view.is_classification:
        held.append(below("train_loss_fitted", tl[-1] / math.log(max(view.num_classes, 2)), 0.05))
    rose = all_of(above("val_loss_over_min", vl[-1] / vl[best], 1.1, "excess") if vl[best] > 0
                  else flag("val_loss_over_min", vl[-1] > 1.1 * vl[best]),
                  above("epochs_past_min", len(vl) - 1 - best, 1.5),  # ≥ 2 epochs, an integer
                  any_of(*held, name="train_loss_held"), name="val_rose")
    # or the validation loss stopped improving long ago (≥ 5 epochs and a quarter of the run) while
    # the training loss kept falling ≥ 2×: fitting the training set, not the task (facenet#956)
    past = len(vl) - 1 - best
    stalled = all_of(above("epochs_past_min", past, max(4.5, 0.25 * len(vl))),
                     above("train_loss_fall_since", tl[best] / tl[-1] if tl[-1] > 0 else float("inf"), 2.0),
                     name="val_stalled")
    trend = [rose, stalled]
    n_val = view.sizes.get("val", 0)
    if view.is_classification and n_val:
        va = eps[-1]["val"].get("accuracy", 0.0)
        se = math.sqrt(max(va * (1 - va), 1e-12) / n_val)
        # memorised: the training loss near zero, or a training error an order of magnitude below the
        # validation error (a transformer on 90 digits: loss 0.19, one training sample wrong — 1.1 %
        # against 30 % on validation: yolov7#1241)
        fitted = any_of(below("train_loss_fitted", tl[-1] / math.log(max(view.num_classes, 2)), 0.05),
                        above("val_over_train_error", (1.0 - va) / max(1.0 - tr, 1e-3), 10.0),
                        name="train_set_fitted")
        trend.append(all_of(fitted, above("accuracy_gap", gap, 0.1, "odds", strict=False),
                            above("gap_in_standard_errors", gap / se, 3.0, strict=False), name="memorised"))
    return all_of(any_of(*trend, name="trend"), big)


@register_rule(CODE, phase="end", modes=("train",))
def overfitting(view: RunView) -> Finding | None:
    """Validation loss rises while training loss falls, with a large train/val gap."""
    if not signal(view):
        return None
    eps = _epochs(view)
    vl = [e["val"]["loss"] for e in eps]
    tl = [e["train"]["loss"] for e in eps]
    best = vl.index(min(vl))
    last = eps[-1]
    tr, va, gap = _gap(view, eps)
    n_train = view.sizes.get("train")
    params = view.meta.get("params", 0)
    ev = {"train_metric": tr, "val_metric": va, "gap": gap, "val_loss_min": vl[best], "val_loss_min_epoch": best + 1,
          "val_loss_final": vl[-1], "train_loss_final": tl[-1], "epochs": len(eps), "params": params}
    if n_train:
        ev["train_samples"] = n_train
    causes = []
    m, o = view.recipe.model, view.recipe.optim
    if n_train and params > 10 * n_train:
        causes.append(f"{params:,} parameters for {n_train:,} training samples: the model can memorise the data")
    elif n_train and n_train < 500:
        causes.append(f"only {n_train} training samples")
    if best < len(eps) - 1:
        causes.append(f"trained {len(eps) - 1 - best} epochs past the best validation loss (epoch {best + 1}: "
                      f"{g(vl[best])} → {g(vl[-1])}) without early stopping")
    else:
        causes.append(f"the training set is memorised (training loss {g(tl[-1])}, accuracy {tr:.2f}) while "
                      f"validation accuracy stays at {va:.2f}: what the model learned does not transfer")
    reg = []
    if not m.options.get("dropout") and not view.meta.get("dropout"):
        reg.append("no dropout")
    if o.weight_decay < 1e-3 and not view.recipe.loss.l2:
        reg.append(f"weight decay {o.weight_decay:g}")
    if reg:
        causes.append("little regularisation: " + ", ".join(reg))
    if not view.recipe.data.augment:
        causes.append("no data augmentation")
    patience = max(3, len(eps) // 15)  # AutoTrainer: max(3, epochs/15)
    widths, scalar = hidden_widths(view)
    image = len(view.input_shape) == 3
    fx = fixes(
        fix(view, CODE, "early_stopping", {"train.early_stopping": {
            "monitor": "val.accuracy" if view.is_classification else "val.loss", "patience": patience}}),
        fix(view, CODE, "weight_decay", {"optim.weight_decay": max(0.05, o.weight_decay * 10)}),
        fix(view, CODE, "dropout", {"model.dropout": 0.3}) if not m.options.get("dropout") else None,
        fix(view, CODE, "augment", {"data.augment": ["crop:2", "noise:0.05"] if image else ["noise:0.1"]}),
        fix(view, CODE, "smaller", {"model.hidden": hidden_patch([max(8, h // 4) for h in widths], scalar)})
        if widths else None,
        fix(view, CODE, "l2", {"loss.l2": 1e-4}) if not view.recipe.loss.l2 else None,
        fix(view, CODE, "more_data"),
    )
    return make(view, CODE, "warning", last.get("step"), ev, causes, fx)
