"""adapter_collapse: an adapter run fails where full fine-tuning of the same recipe succeeds (issue 18).

Symptom: a run trained through an adapter (``recipe.adapter``: LoRA, VeRA, DyLoRA, prefix tuning, …)
learns poorly — below underfitting's quality bar (0.6 of the way from chance to perfect accuracy, or
R² 0.3); for a language model, whose loss has no such scale, a last-epoch exact match below 0.6 when
the task logs one (the ``lm`` task does: every learned token of a sequence right), else a loss that
fell < 20 % (the gate ``lora_rank_too_low`` uses) — and a probe, the same recipe without the adapter
(every weight trains, from the same base, at the recipe's rate, for the run's steps), clears the bar
the run missed; without a quality scale, its validation loss (else training loss) is below half the
run's. When the probe diverges (its loss ends no lower than it started, or not finite), or misses the
bar at a rate above the optimizer's typical one (:func:`liandan.doctor.view.typical_lr`), it is
retrained once at a tenth of the rate — an adapter's rate is often ~10× what full fine-tuning takes
(Hu et al. 2022 train LoRA at 2e-4 where GPT-3 was fine-tuned fully at 1e-5…1e-4), so a full
fine-tune that only works at lr/10 still shows the task is learnable from this base.

Why measure instead of read a statistic: a passive statistic did not separate the failures (on the
arith-sub-lora pairs 0-4, max ‖ΔW‖/‖W‖ and the train-loss progress ratio separated the old recipe from
the preset by < 1.5× and followed the rate, not the outcome), and the finding's claim *is* a
counterfactual: the same fine-tune without the adapter works.

Relation to ``lora_rank_too_low`` (same probe machinery, :mod:`._retrain`): when that rule fires —
the run at rank ×16 (α ×16) clears the bar — the rank explains the failure and a larger rank is the
cheaper fix (the adapter's memory and its milder forgetting are kept, Biderman et al. 2024), so this
rule stays silent and the full fine-tune is not even trained; it fires only when a larger rank did not
help (or the adapter has no rank). The two findings never appear together. The cause is then the
adapter's optimisation: with Adam a LoRA step ΔW = (α/r)·BA grows with lr·α/r (Hu et al. 2022 §4.1:
tuning α is tuning the rate), so a rate or α that full fine-tuning tolerates can throw the adapter's
few directions off; or the adapter leaves the layers that must change frozen.
More specific than ``underfitting`` (suppressed), and the root of the collapsed run's dead units,
saturation and vanishing gradients (suppressed: the same model fine-tuned fully at that rate learns).
The probe's numbers are a ``full_probe`` record.
Notes: 大模型微调方法 (Lora); 微调 (部分或全部参数).
"""

from __future__ import annotations

import math
from typing import Any

from liandan.doctor.findings import Finding
from liandan.doctor.rules import lora_rank_too_low as rank_rule
from liandan.doctor.rules._common import fix, fixes, floor_lr, g, make
from liandan.doctor.rules._retrain import cached, head, probe_steps, quality_of, retrain, run_loss, tail
from liandan.doctor.rules._signal import Signal, above, all_of, below, learns_poorly, negate, signal_of, silent
from liandan.doctor.view import RunView, typical_lr
from liandan.registry import register_rule

CODE = "adapter_collapse"
RECORD = "full_probe"
EXACT_BAR = 0.6  # exact match has chance ≈ 0: the same 0.6 of the way to perfect as underfitting's bar
RATIO = 2.0  # without a quality scale: the run's loss over the full fine-tune's
RETRY = 10.0  # a diverged probe retrains once at lr / RETRY
WARMUP_EPOCHS = 1.0  # the lower-rate fix warms up for about one epoch (the arith-sub-lora preset: 100 steps)


def exact_match(epochs: list[dict[str, Any]]) -> float:
    """The last epoch's exact match, validation preferred to training; NaN when the task logs none."""
    for split in ("val", "train"):
        vals = [e[split]["exact_match"] for e in epochs
                if isinstance(e.get(split), dict) and e[split].get("exact_match") is not None]
        if vals:
            return float(vals[-1])
    return float("nan")


def scale(view: RunView) -> str:
    """What the run is judged by: ``quality`` (accuracy over chance or R²), ``exact_match`` (a language
    model's answers) or ``loss`` (neither)."""
    if not math.isnan(view.quality()):
        return "quality"
    return "loss" if math.isnan(exact_match(view.epochs)) else "exact_match"


def gate(view: RunView) -> Signal:
    """The run learns poorly on its own scale."""
    if scale(view) == "exact_match":
        return below("exact_match", exact_match(view.epochs), EXACT_BAR, "odds")
    return learns_poorly(view)


def _val_loss(metrics: dict[str, Any]) -> float:
    v = (metrics.get("val") or {}).get("loss")
    return float(v) if v is not None else float("nan")


def _try(view: RunView, lr: float) -> dict[str, Any] | str:
    got = retrain(view, {"adapter": None, "optim.lr": lr})
    if isinstance(got, str):
        return got
    losses, metrics = got
    return {"lr": lr, "steps": len(losses), "start_loss": head(losses), "loss": tail(losses),
            "val_loss": _val_loss(metrics), "quality": quality_of(view, metrics),
            "exact_match": exact_match([metrics]), "metrics": metrics}


def diverged(t: dict[str, Any]) -> bool:
    """The probe's training loss ended non-finite or no lower than it started."""
    return not (math.isfinite(t["loss"]) and t["loss"] < t["start_loss"])


def _as_record(view: RunView, t: dict[str, Any]) -> dict[str, Any]:
    last = view.epochs[-1] if view.epochs else {}
    return {"steps": t["steps"], "run_loss": run_loss(view, t["steps"]), "run_val_loss": _val_loss(last),
            "probe_lr": t["lr"], "probe_loss": t["loss"], "probe_val_loss": t["val_loss"],
            "probe_quality": t["quality"], "probe_exact_match": t["exact_match"]}


def _retry(view: RunView, t: dict[str, Any]) -> bool:
    """Retrain at lr/10 when the probe diverged, or missed the bar at a rate above the optimizer's
    typical one (a full fine-tune that collapses at an adapter's rate says nothing about the task;
    one that fails at a low rate would fail lower still)."""
    return diverged(t) or (not clears(view, _as_record(view, t)) and view.lr > typical_lr(view.optimizer))


def _train_probe(view: RunView) -> dict[str, Any]:
    tries: list[dict[str, Any]] = []
    for lr in (view.lr, view.lr / RETRY):
        t = _try(view, lr)
        if isinstance(t, str):
            return {"type": RECORD, "skipped": t}
        tries.append(t)
        if not _retry(view, t):
            break
    # the try that clears the bar, else the last that did not diverge, else the last
    best = next((t for t in tries if clears(view, _as_record(view, t))), None) \
        or next((t for t in reversed(tries) if not diverged(t)), tries[-1])
    return {"type": RECORD, **_as_record(view, best),
            "tries": [{k: v for k, v in t.items() if k != "metrics"} for t in tries],
            "probe_metrics": best["metrics"]}


def probe(view: RunView) -> dict[str, Any] | None:
    """The ``full_probe`` record: found among the view's records, else trained now."""
    return cached(view, RECORD, _train_probe)


def _loss_ratio(rec: dict[str, Any]) -> tuple[str, float]:
    """(name, run loss / full fine-tune's loss): validation losses when both have one."""
    a, b = rec.get("run_val_loss", float("nan")), rec.get("probe_val_loss", float("nan"))
    if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and b > 0:
        return "val_loss_over_full_fine_tune", a / b
    a, b = rec["run_loss"], rec["probe_loss"]
    return "loss_over_full_fine_tune", a / b if b > 0 and math.isfinite(a) else float("nan")


def clears(view: RunView, rec: dict[str, Any]) -> Signal:
    """The full fine-tune clears the bar the run missed (or reaches < half its loss)."""
    kind = scale(view)
    if kind == "quality" and rec.get("probe_quality") is not None:
        return above("full_fine_tune_quality", rec["probe_quality"], view.poor(), "odds")
    if kind == "exact_match" and rec.get("probe_exact_match") is not None \
            and math.isfinite(rec["probe_exact_match"]):
        return above("full_fine_tune_exact_match", rec["probe_exact_match"], EXACT_BAR, "odds")
    name, ratio = _loss_ratio(rec)
    return above(name, ratio, RATIO)


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """An adapter run that learns poorly, that a larger rank does not rescue (``lora_rank_too_low``
    silent), and whose recipe without the adapter clears the bar (or halves the loss)."""
    if view.mode != "train" or view.phase != "end" or view.recipe.adapter is None:
        return silent("no adapter")
    gt = gate(view)
    if not gt.fires:
        return all_of(gt, name="learns well")  # no probe: the run fitted
    if rank_rule.rank_of(view) is not None:
        rank = rank_rule.signal(view)
        if rank.fires:  # a larger rank fits: that finding names the cheaper fix; no full fine-tune trained
            return all_of(gt, negate(rank, "larger_rank_does_not_fit"))
        gt = all_of(gt, negate(rank, "larger_rank_does_not_fit"))
    if probe_steps(view) < 10:
        return silent("fewer than 10 steps")
    rec = probe(view)
    if rec is None:
        return silent("no full fine-tuning probe")
    return all_of(gt, clears(view, rec))


def _reached(view: RunView, rec: dict[str, Any]) -> str:
    kind = scale(view)
    if kind == "quality" and rec.get("probe_quality") is not None:
        return f"quality {view.quality():.2f} (0 chance, 1 perfect) against {rec['probe_quality']:.2f}"
    if kind == "exact_match":
        return f"exact match {exact_match(view.epochs):.3f} against {rec['probe_exact_match']:.3f}"
    name, ratio = _loss_ratio(rec)
    which = "validation" if name.startswith("val") else "training"
    return f"{which} loss {ratio:.1f}× the full fine-tune's"


# the full fine-tune of the same model at the same rate learns: units and gradients that die in the adapter
# run are its collapse's consequence (a constant prediction), not the architecture's
@register_rule(CODE, phase="end", modes=("train",),
               suppresses=("underfitting", "vanishing_gradients", "dead_relu", "saturated_activations"))
def adapter_collapse(view: RunView) -> Finding | None:
    """An adapter run that fails where full fine-tuning of the same recipe succeeds."""
    if not signal(view):
        return None
    rec = probe(view)
    a, o, s = view.recipe.adapter, view.recipe.optim, view.recipe.schedule
    method = a.name or f"peft adapter from {a.from_}"
    ra = rank_rule.rank_of(view)
    r, alpha = ra if ra is not None else (None, None)
    scaled = alpha is not None and r and alpha / r > 2  # above the α = 2r convention: a larger step
    kind = scale(view)
    ev = {"adapter": method, "r": r, "alpha": alpha, "lr": o.lr, "warmup_steps": s.warmup_steps,
          "steps": rec["steps"], "probe_lr": rec["probe_lr"], "run_loss": rec["run_loss"],
          "probe_loss": rec["probe_loss"], "run_val_loss": rec.get("run_val_loss"),
          "probe_val_loss": rec.get("probe_val_loss"), "probe_tries": len(rec.get("tries", []))}
    if kind == "quality":
        ev.update(quality=view.quality(), probe_quality=rec.get("probe_quality"))
    elif kind == "exact_match":
        ev.update(exact_match=exact_match(view.epochs), probe_exact_match=rec.get("probe_exact_match"))
    at = "the same rate" if rec["probe_lr"] == o.lr else f"lr {g(rec['probe_lr'])} (at lr {g(o.lr)} it failed too)"
    causes = [f"the {method} run and the same recipe without the adapter at {at} ({rec['steps']} steps): "
              f"{_reached(view, rec)}: the task is learnable from this base; the adapter's training is what fails"]
    if r is not None:
        causes.append(f"the update's step grows with lr·α/r = {g(o.lr)}·{alpha:g}/{r}" if alpha is not None
                      else f"a rank-{r} update")
        causes[-1] += (" (with Adam, α/r scales the rate: Hu et al. 2022 §4.1)"
                       + (f"; α/r = {g(alpha / r)}, above the usual 2" if scaled else ""))
    if a.options.get("targets") not in ("all-linear", None):
        causes.append(f"the adapter covers only {a.options['targets']}: the other layers stay frozen")
    spe = view.steps_per_epoch
    warm = {"schedule.warmup_steps": max(s.warmup_steps, round(WARMUP_EPOCHS * spe))}
    fx = fixes(
        fix(view, CODE, "smaller_alpha", {"adapter.alpha": 2 * r}) if scaled else None,
        # half the rate (the arith-sub-lora repair); the probe's rate when full fine-tuning needed lr/10 itself
        fix(view, CODE, "lower_lr_warmup", {"optim.lr": floor_lr(o.lr / 2) if rec["probe_lr"] >= o.lr
                                            else rec["probe_lr"], **warm}),
        # a larger rank only when none was tried: lora_rank_too_low's probe (rank ×16) did not fit
        fix(view, CODE, "larger_rank", {"adapter.r": r * 4} | ({"adapter.alpha": alpha * 4} if alpha else {}))
        if r is not None and not any(x.get("type") == rank_rule.RECORD for x in view.records) else None,
        fix(view, CODE, "all_linear", {"adapter.targets": "all-linear"})
        if r is not None and a.options.get("targets") not in ("all-linear",) else None,
        fix(view, CODE, "full_fine_tune", {"adapter": None, "optim.lr": rec["probe_lr"]}),
    )
    return make(view, CODE, "warning", view.epochs[-1].get("step") if view.epochs else None, ev, causes, fx)
