"""lr_too_high: updates so large the loss bounces instead of descending.

Symptom: the median update/weight ratio |ΔW|/|W| over layers and probe steps exceeds 1e-2
(TheDeepChecker flags log10 ratio > -1 as "changing too quickly"; healthy runs here sit near
1e-3, the classic heuristic, Karpathy's cs231n notes). Second signal — the loss oscillates
instead of settling (AutoTrainer's "oscillating loss"): the windowed training loss climbs back
to ≥ 2× the best it had reached (in a run that learns well, only if it also ends ≥ 1.2× above its
best: a climb the run recovered from — a warmup's peak its decay settles — is a transient), or
the validation loss ends ≥ 1.5× (and 0.1) above its minimum
while the per-epoch training loss is also ≥ 1.2× above its own (val up alone is overfitting), or
the quality fell ≥ 0.1 below the best epoch's (AutoTrainer: accuracy swings ≥ ζ), or, with
updates ≥ 2 %, the loss did not move at all (< 10 % drop — for classification counted from ln K
when it started above, so falling back to chance is no progress — and accuracy at chance).
A high ratio alone is common in tiny or heavily regularised models whose weights are small.
Third, the arbiter (one opinion on the rate, :mod:`liandan.doctor.lr_opinion`): the rate lies
above the LR range test's usable range for this recipe — so ``liandan lr-find``'s suggestion
never draws this finding. A rate more than 10× above that range is too high on the test's
own evidence (its curve turns up well below it) even where this run's loss happened to settle.
The test runs only once the updates are large. Where nothing else shows it but the rate is above
the usable range, an ablation probe trains the recipe at the test's suggestion for the run's steps:
ending clearly better there (:func:`._retrain.gain`) confirms the rate as the cause (a run that
settles at a high rate).
Where the test gives no opinion (a flat sweep), the probe trains at the optimizer's typical rate
instead, for a rate a decade or more above it.
The test's own break counts as well: a rate at or above where the sweep's loss diverged, or climbed
back above its start (:class:`liandan.training.lr_finder.RangeTest`), is condemned like one 10× above.
Overfitting is not suppressed: a run that fits its training set and loses the validation set is
overfitting first; this finding is then reported as ``info`` (a secondary cause) behind it.
Notes: 学习率对模型训练的影响 — "太大会导致一步跳过山谷, 对面再跳回来, 震荡".
"""

from __future__ import annotations

import math

from liandan.doctor.findings import Finding
from liandan.doctor.lr_opinion import TYPICAL_FAR, recorded
from liandan.doctor.rules._common import fix, fixes, g, init_gain, lower_lr, make, pct
from liandan.doctor.rules._retrain import ablation, cached, confirms
from liandan.doctor.rules._signal import (
    Signal,
    above,
    all_of,
    any_of,
    below,
    below_ceiling,
    flag,
    learns_poorly,
    signal_of,
)
from liandan.doctor.rules.overfitting import signal as overfit_signal
from liandan.doctor.view import ADAPTIVE, RunView, finite, median, typical_lr
from liandan.registry import register_rule

CODE = "lr_too_high"
RECORD = "rate_probe"
UPDATE, RISE, COLLAPSE, FAR = 1e-2, 2.0, 0.1, 10.0
LOSS_GAIN = 1.2  # no quality scale: the rate probe's validation loss must end this many times lower


def update_ratio(view: RunView) -> float:
    """Median over probe steps (after the first) of the median layer update/weight ratio."""
    per_probe = []
    for p in view.probes[1:]:
        ups = [st["update"] for st in p.get("layers", {}).values() if "update" in st]
        if ups:
            per_probe.append(median(ups))
    return median(per_probe)


def _windows(view: RunView) -> list[float]:
    """Mean training loss over windows of 5 % of the run (at least 5 steps), half-overlapping."""
    lo = view.loss
    w = max(5, len(lo) // 20)
    out = []
    for i in range(0, max(1, len(lo) - w + 1), max(1, w // 2)):
        if seg := finite(lo[i:i + w]):
            out.append(sum(seg) / len(seg))
    return out


def loss_rise(view: RunView) -> float:
    """Largest ratio of a windowed mean training loss to the best windowed mean before it
    (1 = the loss never climbed back up; 3 = it bounced to three times its best)."""
    best, rise = float("inf"), 1.0
    for m in _windows(view):
        if 0 < best < float("inf"):
            rise = max(rise, m / best)
        best = min(best, m)
    return rise


def end_over_best(view: RunView) -> float:
    """The last window's mean training loss over the best window's (1 = the run ended at its best)."""
    ws = _windows(view)
    return ws[-1] / min(ws) if ws and min(ws) > 0 else float("nan")


def progress(view: RunView) -> float:
    """The loss drop, for classification counted from the loss of a uniform guess (ln K) when the
    run started above it: a large initial loss that falls back only to chance level (2.6 → 2.30
    on 10 classes) is no progress, although it is a 12 % drop."""
    drop = view.loss_drop()
    if not view.is_classification or view.num_classes < 2 or not math.isfinite(drop):
        return drop
    start, end = view.loss_window(True), view.loss_window(False)
    chance = math.log(view.num_classes)
    return 1.0 - end / chance if start > chance else drop


def _bounce(val: list[float], tr: list[float]) -> Signal:
    """Validation loss up *and* training loss up: oscillation; val up alone is overfitting."""
    if len(val) < 2 or len(tr) < 2:
        return flag("bounce", False)  # fewer than two epochs
    return all_of(above("val_loss_over_min", val[-1] / min(val), 1.5, "excess") if min(val) > 0
                  else flag("val_loss_over_min", val[-1] > 1.5 * min(val)),
                  above("val_loss_rise", val[-1] - min(val), 0.1),
                  above("train_loss_over_min", tr[-1] / (1.2 * min(tr) + 0.05), 1.0) if 1.2 * min(tr) + 0.05 > 0
                  else flag("train_loss_over_min", tr[-1] > 1.2 * min(tr) + 0.05), name="bounce")


def range_checks(view: RunView) -> tuple[Signal, Signal]:
    """(the rate above the range test's usable range — or no test: no veto —, the test's own curve
    condemns the rate, whatever this run's loss shows: more than a decade above that range, or at
    or above the rate where the sweep broke — its loss diverged or climbed back above its start)."""
    from liandan.doctor.lr_opinion import usable_range

    rng = usable_range(view)
    if rng is None:
        return flag("no range test", True), flag("lr_far_above_range", False)
    far = above("lr_far_above_range", view.lr, FAR * rng["high"])
    broke = rng.get("diverged_at")
    if broke:
        far = any_of(far, above("lr_at_sweep_break", view.lr, broke, strict=False), name="condemned")
    return above("lr_over_range_test", view.lr, rng["high"]), far


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """Update/weight ratio > 1e-2, and the loss bounces (val and train up), climbs back ≥ 2× its
    best, the quality collapses ≥ 0.1, or (updates > 2e-2) the loss is stuck at chance — or the
    rate is more than 10× the top of the range test's usable range; and the rate above that range.
    The range test runs only once the updates are large: it costs a short training, and the parts
    left out can only make the reported margin more negative.)"""
    upd = update_ratio(view)
    val = finite(view.metric("val", "loss"))
    tr = finite(view.metric("train", "loss"))
    drop = progress(view)
    # big steps, yet no progress at all: jumping around the valley instead of descending into it
    stuck = all_of(flag("train mode", view.mode == "train"), above("update_ratio", upd, 2 * UPDATE),
                   below("loss_drop", drop, 0.1, "odds"), below("best_quality", view.quality(best=True), 0.1, "odds"),
                   name="stuck")
    big = above("update_ratio", upd, UPDATE)
    if not math.isfinite(upd) and view.bad_steps() and not init_gain(view) >= 2:
        # the run overflowed before a probe after the first could measure its steps: the range test
        # (below) judges the rate alone (a fine-tune at Nesterov 0.5 goes NaN at step 6 of 15) — unless
        # weights ≥ 2× He-sized blow up at any rate, the test's sweep included (the init's story)
        big = flag("updates_overflowed", True)
    rise = above("loss_rise", loss_rise(view), RISE, "excess", strict=False)
    if not view.learns_poorly():
        # a climb the run recovered from — ending within 1.2× its best loss, learning well — is a
        # transient, not a rate that keeps it bouncing (a warmed-up ResNet at 0.2 climbs 1.95× at the
        # peak of its warmup, then its cosine decay takes it to its best loss and 0.93 accuracy)
        # (and one whose validation loss ended at its best — 5 % within — is still descending: the
        # windowed training loss of small batches bounces around a descent, a narrow ResNet at 0.05 with
        # validation loss 1.55 → 0.29 → 0.18)
        rise = all_of(rise, above("loss_end_over_best", end_over_best(view), 1.2, "excess"),
                      above("val_loss_end_over_best", val[-1] / min(val), 1.05, "excess") if len(val) >= 2
                      and min(val) > 0 else flag("val_loss_end_over_best", True), name="rise_unrecovered")
    shows = (_bounce(val, tr), rise,
             above("quality_drop", view.quality(best=True) - view.quality(), COLLAPSE, "odds", strict=False), stuck)
    if not big.fires:
        plain = all_of(big, any_of(*shows, name="oscillates"))
        return plain if plain.fires else any_of(plain, rate_ablation(view, above_range=True), name=CODE)
    within, far = range_checks(view)
    # the run learns poorly at a rate the range test condemns: the rate is the cause the test names
    # (a run that learns well at such a rate is left alone). Classification only: accuracy over chance
    # says "poorly" reliably, while noisy regression sets (diabetes: R² ≈ 0.5 at best) dip below the bar.
    poor = all_of(flag("classification", view.is_classification), learns_poorly(view),
                  flag("range test", within.name == "lr_over_range_test"), name="poor_above_range")
    said = [*shows, far, poor]
    if within.fires and not any(s.fires for s in said):
        # nothing shows it yet: does the test's own rate do clearly better (a language model: a validation
        # loss 1.2× lower)? With no opinion from the test (a flat sweep), the typical rate is asked
        # instead, for a rate a decade or more above it
        said.append(_probe_better(view) if within.name == "lr_over_range_test" else rate_ablation(view, True))
    return all_of(big, any_of(*said, name="oscillates"), within)


def rate_ablation(view: RunView, above_range: bool, gate: Signal | None = None) -> Signal:
    """The rate alone, tested by changing it: a run below its ceiling (where quality is measured:
    classifying, quality < 0.85; regressing, R² < 0.3) at a rate outside the LR range test's usable
    range — above it for ``lr_too_high``, below it for ``lr_too_low`` — and the same recipe at the
    test's suggestion, trained for the run's steps, ends clearly better (:func:`._retrain.gain`).
    Whatever the update ratio says: the probe is the experiment the ratio only hints at (Adam's steps
    are ~lr per weight, so a rate far too high for a recipe can move a wide net's weights < 1 % a step
    while it stays near chance). Alone, on the development half's transcribed runs (seed offset 0,
    before language models were asked), this check names 35 of the 46 rate faults in the right direction
    and none of the 41 healthy runs; the rest are language models, runs gone NaN, or ones whose probe
    gains too little.
    A run with no quality scale (a language model) is tested only behind the caller's ``gate`` (its
    own symptom), and the probe then confirms by a validation loss ≥ 1.2× lower than the run's.
    Where the test gives no opinion, the optimizer's typical rate stands in for its range and its
    suggestion, for a rate a decade or more away from it (:func:`reference_rate`)."""
    from liandan.doctor.lr_opinion import usable_range

    measured_quality = view.is_classification or view.is_regression
    if not measured_quality and gate is None:
        return flag("quality measured", False)

    # below the ceiling: accuracy under 0.85 of the way from chance to perfect (a fine-tune at its
    # pre-training rate ends at 0.81 where the test's rate reaches 0.94 — vig176), R² under the usual bar.
    # A run whose loss went NaN is the non-finite and exploding rules' story (the rate is reported beside
    # them when the range test places it above its range, :func:`.lr_opinion.rate_above_range`): a probe
    # at a lower rate that stays finite would "gain" whatever blew the run up — a deep init as well
    poorly = all_of(flag("run ended", view.phase == "end"),
                    flag("finite loss", len(finite(view.loss)) == len(view.loss)),
                    below_ceiling(view) if measured_quality else gate,
                    name="below_ceiling")
    if not above_range:
        # a rate above its optimizer's usual one is not called too low on a probe alone: a small task's
        # sweep can place the usable range far above it (a GRU on digits under Adam: from 0.02), and a
        # run at 5e-3 annealed by a cosine that reaches 0.83 is a healthy recipe however the probe does
        poorly = all_of(poorly, below("lr_at_most_typical", view.lr, typical_lr(view.optimizer), strict=False),
                        name="below_ceiling")
    if not poorly.fires:
        return poorly
    rng = usable_range(view)
    if rng is not None:
        outside = above("lr_over_range_test", view.lr, rng["high"]) if above_range \
            else below("lr_under_range_test", view.lr, rng["low"])
    else:
        # no curve to read a range from — a flat sweep (LeNet-5 under plain SGD needs more steps to leave
        # its plateau than the sweep spends on a decade: flat over 400 steps, while 0.05 reaches 0.93 in
        # 135) or no test: the optimizer's typical rate is the reference, for a rate a decade or more away from it
        typ = typical_lr(view.optimizer)
        outside = above("lr_over_typical", view.lr, TYPICAL_FAR * typ, strict=False) if above_range \
            else below("lr_under_typical", view.lr, typ / TYPICAL_FAR, strict=False)
    if not outside.fires:
        return all_of(poorly, outside, name="rate_ablation")
    return all_of(poorly, outside, _probe_better(view), name="rate_ablation")


def reference_rate(view: RunView) -> tuple[float, str]:
    """(the rate a rate probe trains at, where it comes from): the range test's suggestion, or —
    the test gave no opinion — the optimizer's typical rate (:func:`.view.typical_lr`)."""
    rng = recorded(view)
    if rng is not None:
        return float(rng["suggestion"]), "the range test's rate"
    return typical_lr(view.optimizer), f"the typical rate for {view.optimizer}"


def _probe(view: RunView) -> dict:
    return ablation(view, RECORD, {"optim.lr": reference_rate(view)[0]})


def _probe_gain(view: RunView) -> Signal:
    """The ablation probe (:mod:`._retrain`, a ``rate_probe`` record): the recipe at the range
    test's suggestion, for the run's steps, ends clearly above the run (:func:`._retrain.gain`) —
    the rate, above the test's usable range, costs it that much. Asked only once the steps are
    large and the rate above that range, and nothing else showed it: a run that settles at a high
    rate (mlx#188: Adam at 0.1 on an MLP ends at 0.85 where the test's rate reaches 0.94)."""
    return confirms(view, RECORD, _probe, "lower_rate_quality_gain")


def _probe_better(view: RunView) -> Signal:
    """The rate probe ends clearly better than the run: in quality (:func:`_probe_gain`), or — a run with
    no quality scale, a language model — in validation loss (:func:`_probe_loss_gain`)."""
    return _probe_gain(view) if view.is_classification or view.is_regression else _probe_loss_gain(view)


def _probe_loss_gain(view: RunView) -> Signal:
    """The rate probe on a run with no quality scale: its validation loss ends ≥ 1.2× below the run's
    (a tiny GPT at 3e-5 ends at 2.16 nats, at the test's rate 1.3)."""
    if view.phase != "end":
        return flag("lower_val_loss_at_test_rate", False)
    rec = cached(view, RECORD, _probe)
    run = finite(view.metric("val", "loss"))
    probe = ((rec or {}).get("probe_metrics") or {}).get("val", {}).get("loss")
    if not run or not isinstance(probe, (int, float)) or not math.isfinite(probe) or probe <= 0:
        return flag("lower_val_loss_at_test_rate", False)
    return above("run_over_probe_val_loss", run[-1] / probe, LOSS_GAIN)


def report_probe(view: RunView, ev: dict, causes: list[str]) -> None:
    """Add the rate probe's result, if one was measured, to a rate finding's evidence and causes
    (its quality, or — no quality scale — its validation loss against the run's)."""
    rec = next((r for r in view.records if r.get("type") == RECORD and "probe_metrics" in r), None)
    if rec is None:
        return
    lr, steps = rec["patch"]["optim.lr"], rec["steps"]
    where = reference_rate(view)[1]
    if rec.get("probe_quality") is not None:
        ev.update(probe_quality=rec["probe_quality"], probe_steps=steps)
        causes.append(f"the same recipe at {where} {lr:.3g} reaches quality {rec['probe_quality']:.2f} "
                      f"(run: {max(view.quality(), 0.0):.2f}) in {steps} steps")
        return
    probe, run = (rec["probe_metrics"].get("val") or {}).get("loss"), finite(view.metric("val", "loss"))
    if probe is not None and run:
        ev.update(probe_val_loss=probe, probe_steps=steps)
        causes.append(f"the same recipe at {where} {lr:.3g} ends at validation loss {probe:.3g} "
                      f"(run: {run[-1]:.3g})")


@register_rule(CODE, phase="epoch", suppresses=("underfitting",))
def lr_too_high(view: RunView) -> Finding | None:
    """Updates are > 1 % of the weights per step and the loss bounces instead of settling."""
    sig = signal(view)
    if not sig:
        return None
    upd = update_ratio(view)
    val = finite(view.metric("val", "loss"))
    rise = loss_rise(view)
    collapse = view.quality(best=True) - view.quality()  # learned, then lost it again
    drop = progress(view)
    bounce, stuck = sig.find("bounce").fires, sig.find("stuck").fires
    far = cond if (cond := sig.find("condemned")) is not None else sig.find("lr_far_above_range")
    step = next((p["step"] for p in view.probes[1:]
                 if median([st.get("update", 0) for st in p.get("layers", {}).values()], 0) > UPDATE),
                view.probes[-1]["step"] if view.probes else None)
    rng = recorded(view)
    ev = {"update_ratio": upd, "lr": view.lr, "optimizer": view.optimizer, "loss_drop": drop, "loss_rise": rise,
          "quality_drop": collapse, "stuck": stuck,
          "val_loss_min": min(val) if val else None, "val_loss_final": val[-1] if val else None,
          "quality": view.quality()}
    if rng is not None:
        ev["range_test"] = {k: rng.get(k) for k in ("suggestion", "low", "high", "diverged_at")}
    typ = typical_lr(view.optimizer)
    causes = [f"learning rate {view.lr:g} moves the weights by {pct(upd)} per step (healthy ≈ 0.1 %): "
              "each step jumps across the valley and back, so the loss oscillates" if upd > UPDATE else
              f"at learning rate {view.lr:g} the run went non-finite at step {view.bad_steps()[0]}, before its "
              "update sizes could be measured" if not math.isfinite(upd) and view.bad_steps() else
              f"at learning rate {view.lr:g} the run learns poorly (quality {max(view.quality(), 0.0):.2f}) although "
              f"its steps move the weights only {100 * upd:.2g} % each: the rate shows its cost when changed alone"]
    if rng is not None:
        causes.append(f"the LR range test on this recipe finds rates up to {rng['high']:.3g} usable (steepest "
                      f"descent at {rng['suggestion']:.3g}): {view.lr:g} is {view.lr / rng['high']:.3g}× above"
                      + (" — where its loss curve has long turned up" if far is not None and far.fires else ""))
        if rng.get("diverged_at") and view.lr >= rng["diverged_at"]:
            causes.append(f"the range test's training broke at {rng['diverged_at']:.3g} (its loss diverged or climbed "
                          f"back above where it started): {view.lr:g} is at or beyond it")
    report_probe(view, ev, causes)
    if rise >= RISE:
        causes.append(f"the training loss climbed back to {rise:.3g}× the best it had reached")
    if stuck:
        causes.append(f"the loss fell only {pct(max(drop, 0.0))} although every step changes the weights by "
                      f"{pct(upd)}: the steps jump across the minimum instead of descending into it")
    if collapse >= COLLAPSE:
        causes.append(f"quality fell from {view.quality(best=True):.2f} at the best epoch to {view.quality():.2f}")
    if bounce:
        causes.append(f"validation loss rose from its minimum {g(min(val))} to {g(val[-1])}")
    if view.lr > 3 * typ:
        causes.append(f"{view.lr:g} is above the usual {typ:g} for {view.optimizer}")
    if view.recipe.schedule.name == "constant":
        causes.append("a constant rate: no decay lets the weights settle at the end")
    if view.recipe.data.batch_size <= 16:
        causes.append(f"small batches ({view.recipe.data.batch_size}) add gradient noise to the large steps")
    # a run that learns well and only bounces keeps its rate and decays it (a tenth of the rate would
    # also learn a tenth as fast); one that learns poorly, or whose rate the range test places above
    # its usable range (lower_lr then goes straight to the range's middle), needs smaller steps first
    cosine = fix(view, CODE, "schedule", {"schedule.name": "cosine"}) if view.recipe.schedule.name == "constant" \
        else None
    decay_first = view.quality() >= view.poor() and rng is None
    fx = fixes(
        cosine if decay_first else None,
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}),
        cosine,
        fix(view, CODE, "warmup", {"schedule.warmup_steps": 100}) if not view.recipe.schedule.warmup_steps else None,
        fix(view, CODE, "clip", {"train.grad_clip": 1.0}) if not view.recipe.train.grad_clip else None,
        fix(view, CODE, "bigger_batch", {"data.batch_size": view.recipe.data.batch_size * 4}),
        fix(view, CODE, "adam", {"optim.name": "adamw", "optim.lr": 1e-3}) if view.optimizer not in ADAPTIVE
        else None,
        fix(view, CODE, "lr_find"),
    )
    # overfitting fires too on a run that fits its training set: that is the primary story
    secondary = overfit_signal(view).fires and view.quality() >= view.poor()
    if secondary:
        causes.append("the run fits its training data and overfits (see overfitting): the large steps are a "
                      "secondary cause")
    return make(view, CODE, "info" if secondary else "warning", step, ev, causes, fx)

