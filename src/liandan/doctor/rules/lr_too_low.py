"""lr_too_low: updates so small that the loss barely moves.

Symptom: the median update/weight ratio is below 1e-4 (TheDeepChecker: log10 |ΔW|/|W| < -4,
"parameters change too slowly"), or the run's whole travel — that ratio × the optimizer steps — is
below 0.1 (few steps of a modest rate: a huge batch, a few epochs, SO 44164749), while the
gradients themselves are not vanishing (the vanishing rule suppresses this one). Second signal:
the loss fell by less than 30 % or the run learns poorly (AutoTrainer's slow convergence,
δ = 0.01 per epoch; its repair raises the rate).
Third, the arbiter (:mod:`liandan.doctor.lr_opinion`): the rate lies below the LR range test's
usable range (a decade under its suggestion), so ``liandan lr-find``'s suggestion never draws it.
A run that learns poorly (or, from scratch, whose loss fell < 30 %) at a rate more than a decade below
that range is too slow on the test's own evidence, whatever its update ratio (the mirror of
``lr_too_high``'s condemned rate). Where nothing else shows it, the rate probe of ``lr_too_high``
(the recipe at the test's suggestion, for the run's steps) decides — for a rate at or below the
optimizer's usual one only: one above it is not called too low on a probe alone.
Notes: 欠拟合 原因 3 (学习率太低, 优化太慢, 没收敛); 学习率 "太小会导致陷入局部最优点".
"""

from __future__ import annotations

import math

from liandan.doctor.findings import Finding
from liandan.doctor.lr_opinion import recorded
from liandan.doctor.rules._common import fix, fixes, g, hidden_widths, make, pct, raise_lr
from liandan.doctor.rules._signal import Signal, all_of, any_of, below, flag, learns_poorly, negate, signal_of
from liandan.doctor.rules.lr_too_high import rate_ablation, report_probe, update_ratio
from liandan.doctor.view import ADAPTIVE, RunView, median, typical_lr
from liandan.registry import register_rule

CODE = "lr_too_low"
UPDATE = 1e-4
# The whole run's movement, update ratio × optimizer steps: 1e-3 × 500 steps = 0.5 in a healthy
# short run; 4e-3 × 10 steps (batch 1024 for 5 epochs of 1,437 samples) = 0.04 never gets going.
TRAVEL = 0.1
FAR = 10.0  # a rate this far under the range test's usable range is condemned by the test's own curve


def range_checks(view: RunView) -> tuple[Signal, Signal]:
    """(the rate below the range test's usable range — or no test: no veto —, the test condemns the
    rate on its own curve: more than a decade below that range, where the sweep's loss had not yet
    begun to fall)."""
    from liandan.doctor.lr_opinion import usable_range

    rng = usable_range(view)
    if rng is None:
        return flag("no range test", True), flag("lr_far_below_range", False)
    return (below("lr_under_range_test", view.lr, rng["low"]),
            below("lr_far_below_range", view.lr, rng["low"] / FAR))


def _steps(view: RunView) -> int:
    """Optimizer steps the run took (the last logged step)."""
    return view.steps[-1] if view.steps else 0


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Update/weight ratio < 1e-4 and the loss fell < 30 % or the run learns poorly, or the whole
    run's travel < 0.1 and it learns poorly; and the rate below the range test's usable range
    (checked only when the others fire) — or, slow (learns poorly, or from scratch a loss that fell
    < 30 %), a rate more than a decade below that range and no hidden layer narrower than the classes."""
    upd, steps = update_ratio(view), _steps(view)
    poorly = learns_poorly(view)
    hardly = below("loss_drop", view.loss_drop(), 0.3, "odds")
    scratch = flag("from scratch", not (view.recipe.model.from_run or view.recipe.model.weights
                                        or view.recipe.model.name == "hf"))
    # tiny steps and a loss that hardly falls; or few modest steps and a run from scratch that learns
    # poorly (a fine-tune starts near its answer: it travels little by design)
    parts = (any_of(all_of(below("update_ratio", upd, UPDATE),
                           any_of(hardly, poorly)),
                    all_of(scratch, below("travel", upd * steps, TRAVEL), poorly), name="small"),)
    # the same second signal — learns poorly, or (from scratch) a loss that fell < 30 % — at a rate the
    # range test condemns (more than a decade under its usable range) names the rate whatever the update
    # ratio says: Adam's steps are ~lr per weight whatever the gradient, so 1e-4 moves a small MLP's
    # weights 0.08 % a step and looks healthy while the spirals it should fit stay at chance (vde6)
    # (classifying or regressing, where quality is measured: for a language model "learns poorly" is a loss
    # that fell < 20 %, true of every short smoke run, and each would pay a range test)
    slow = all_of(flag("quality measured", view.is_classification or view.is_regression),
                  any_of(poorly, all_of(scratch, hardly)), name="slow")
    # — unless a hidden layer is narrower than the classes it must tell apart: that bottleneck, not
    # the rate, holds the run back (a [2]-unit MLP on 10 digits also descends fastest at a high rate)
    widths, _ = hidden_widths(view)
    narrow = flag("bottleneck", view.is_classification and bool(widths) and min(widths) < view.num_classes)
    if not all(p.fires for p in parts) and not slow.fires:
        said = all_of(*parts)
    else:
        within, far = range_checks(view)
        said = any_of(all_of(*parts, within), all_of(slow, far, negate(narrow), name="condemned"), name=CODE)
    if said.fires or narrow.fires:
        return said
    # below the range but not condemned by it, or updates that look healthy in a run below its ceiling:
    # change the rate alone and see (the probe at the test's suggestion, shared with lr_too_high). A run
    # with no quality scale (a language model) is asked only when its weights barely moved over the whole
    # run and its loss fell less than half: a GPT at 3e-5 travels 0.01 in 57 steps, its loss down 28 %
    gate = None if view.is_classification or view.is_regression else all_of(
        scratch, below("travel", upd * steps, TRAVEL), below("loss_drop", view.loss_drop(), 0.5, "odds"),
        name="barely_moved")
    return any_of(said, rate_ablation(view, above_range=False, gate=gate), name=CODE)


@register_rule(CODE, phase="epoch", suppresses=("underfitting",))
def lr_too_low(view: RunView) -> Finding | None:
    """Updates are < 0.01 % of the weights per step and the loss hardly falls."""
    if not signal(view):
        return None
    upd = update_ratio(view)
    drop = view.loss_drop()
    grad = median([p.get("grad_norm", float("nan")) for p in view.probes])
    rng = recorded(view)
    ev = {"update_ratio": upd, "lr": view.lr, "optimizer": view.optimizer, "loss_drop": drop,
          "grad_norm": grad, "quality": view.quality(), "epochs": len(view.epochs)}
    if rng is not None:
        ev["range_test"] = {"suggestion": rng["suggestion"], "low": rng["low"], "high": rng["high"]}
    typ = typical_lr(view.optimizer)
    q = view.quality()
    causes = [f"learning rate {view.lr:g} moves the weights by {upd * 100:.2g} % per step (healthy ≈ 0.1 %) "
              f"although the gradient norm is {g(grad)}: the loss fell only {pct(max(drop, 0.0))}" if upd < UPDATE else
              f"at learning rate {view.lr:g} the loss fell only {pct(max(drop, 0.0))}"
              + ("" if math.isnan(q) else f" and the run learns poorly (quality {max(q, 0.0):.2f})")]
    if rng is not None:
        causes.append(f"the LR range test on this recipe descends fastest at {rng['suggestion']:.3g}: "
                      f"{view.lr:g} is {rng['suggestion'] / view.lr:.3g}× below")
    report_probe(view, ev, causes)
    steps = _steps(view)
    few = upd >= UPDATE and upd * steps < TRAVEL
    if few:
        ev.update(steps=steps, travel=upd * steps, batch_size=view.recipe.data.batch_size)
        causes.append(f"only {steps} optimizer steps (batch {view.recipe.data.batch_size}): at {upd * 100:.2g} % "
                      f"per step the weights travel {upd * steps:.2g} of their size over the whole run")
    if view.lr < typ / 10:
        causes.append(f"{view.lr:g} is far below the usual {typ:g} for {view.optimizer}")
    if view.recipe.optim.name in ("sgd",) and view.recipe.optim.options.get("momentum", 0) == 0:
        causes.append("plain SGD without momentum: small steps and no acceleration along consistent directions")
    bs = view.recipe.data.batch_size
    fx = fixes(
        fix(view, CODE, "smaller_batch", {"data.batch_size": max(16, bs // 16)}) if few and bs >= 128 else None,
        fix(view, CODE, "raise_lr", {"optim.lr": raise_lr(view)}),
        fix(view, CODE, "adam", {"optim.name": "adamw", "optim.lr": 1e-3}) if view.optimizer not in ADAPTIVE
        else None,
        fix(view, CODE, "lr_find"),
        fix(view, CODE, "longer", {"train.epochs": view.recipe.train.epochs * 3}),
    )
    return make(view, CODE, "warning", view.probes[1]["step"] if len(view.probes) > 1 else None, ev, causes, fx)

