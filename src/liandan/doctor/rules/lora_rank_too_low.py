"""lora_rank_too_low: an adapter whose rank cannot fit the task: the same run at a larger rank does.

Symptom: a run trained through a rank-r adapter (LoRA and the variants with an ``r`` option)
learns poorly (the quality gate of underfitting), and a probe — the same recipe, from the same base,
with the rank ×16 and α ×16 (so α/r, the update's scale, stays; Hu et al. 2022 §4.1: only the
capacity changes) trained for the same steps (at most :data:`._retrain.PROBE_STEPS`) — clears the quality bar
the run missed (its last epoch's validation quality above underfitting's 0.6 accuracy over chance,
or R² 0.3); for a task without a quality scale (a language model), its training loss is below half
of the run's (mean of the last 10 % of steps). The low-rank update BA spans at most r directions
per layer (Hu et al. 2022; Aghajanyan et al. 2021's intrinsic dimension): a task that needs more
cannot be fitted whatever the rate or the epochs.
The probe trains only for a run that learns poorly, as the LR range test (:mod:`lr_opinion`) runs
only when its rule's other checks fired; its result is a ``rank_probe`` record in the probe log.
More specific than ``underfitting`` (suppressed): it names the cause. The retraining machinery
(:mod:`._retrain`) is shared with ``adapter_collapse``, which stays silent whenever this rule fires.
Notes: 大模型微调方法 (Lora); 欠拟合解决办法: 增加模型容量 (a larger rank is more capacity).
"""

from __future__ import annotations

import math
from typing import Any

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, make
from liandan.doctor.rules._retrain import cached, quality_of, retrain, run_loss, tail
from liandan.doctor.rules._signal import Signal, above, all_of, learns_poorly, signal_of, silent
from liandan.doctor.view import RunView
from liandan.registry import register_rule

CODE = "lora_rank_too_low"
RECORD = "rank_probe"
FACTOR = 16  # the probe's rank: r × 16 (1 → 16, 4 → 64)
RATIO = 2.0  # the run's final training loss over the probe's


def rank_of(view: RunView) -> tuple[int, float | None] | None:
    """(r, alpha) of the run's adapter when it has a rank option (None: no adapter, or no rank)."""
    a = view.recipe.adapter
    if a is None or a.name is None:
        return None
    from liandan.registry import ADAPTERS

    opts = ADAPTERS.get(a.name).options()
    if "r" not in opts:
        return None
    r = a.options.get("r", opts["r"].default)
    alpha = a.options.get("alpha", opts["alpha"].default) if "alpha" in opts else None
    return (int(r), alpha) if isinstance(r, int) else None


def probe(view: RunView) -> dict[str, Any] | None:
    """The ``rank_probe`` record: found among the view's records, else trained now."""
    return cached(view, RECORD, _train_probe)


def _train_probe(view: RunView) -> dict[str, Any]:
    r, alpha = rank_of(view)
    patch: dict[str, Any] = {"adapter.r": r * FACTOR}
    if alpha is not None:
        patch["adapter.alpha"] = alpha * FACTOR  # the same α/r: only the capacity changes
    got = retrain(view, patch)
    if isinstance(got, str):
        return {"type": RECORD, "skipped": got}
    losses, metrics = got
    n = len(losses)
    return {"type": RECORD, "rank": r, "probe_rank": r * FACTOR, "steps": n, "run_loss": run_loss(view, n),
            "probe_loss": tail(losses), "probe_quality": quality_of(view, metrics), "probe_metrics": metrics}


@signal_of(CODE)
def signal(view: RunView) -> Signal:
    """An adapter run with a rank that learns poorly, and the ×16-rank probe clears the quality bar
    (or, without a quality scale, reaches less than half the run's training loss)."""
    if view.mode != "train" or view.phase != "end" or rank_of(view) is None:
        return silent("no rank-r adapter")
    gate = learns_poorly(view)
    if not gate.fires:
        return all_of(gate, name="learns well")  # no probe: the run fitted
    rec = probe(view)
    if rec is None:
        return silent("no rank probe")
    if rec.get("probe_quality") is not None:  # the larger rank clears the bar the run misses
        return all_of(gate, above("larger_rank_quality", rec["probe_quality"], view.poor(), "odds"))
    if not (rec["probe_loss"] > 0 and math.isfinite(rec["run_loss"])):
        return silent("no rank probe")
    return all_of(gate, above("loss_over_larger_rank", rec["run_loss"] / rec["probe_loss"], RATIO))


@register_rule(CODE, phase="end", modes=("train",), suppresses=("underfitting",))
def lora_rank_too_low(view: RunView) -> Finding | None:
    """A rank-r adapter that cannot fit the task: the same run with rank ×16 fits it."""
    if not signal(view):
        return None
    rec = probe(view)
    r, alpha = rank_of(view)
    a = view.recipe.adapter
    ratio = rec["run_loss"] / rec["probe_loss"]
    ev = {"adapter": a.name, "r": r, "alpha": alpha, "probe_r": rec["probe_rank"], "steps": rec["steps"],
          "run_loss": rec["run_loss"], "probe_loss": rec["probe_loss"], "ratio": ratio, "quality": view.quality(),
          "probe_quality": rec.get("probe_quality")}
    pq = rec.get("probe_quality")
    reached = (f"quality {view.quality():.2f} (0 chance, 1 perfect) against {pq:.2f}" if pq is not None else
               f"training loss {g(rec['run_loss'])} against {g(rec['probe_loss'])} ({ratio:.1f}× lower)")
    causes = [f"the rank-{r} {a.name} update and the same run with rank {rec['probe_rank']} ({rec['steps']} steps): "
              f"{reached}: the task needs more directions than rank {r} gives each layer"]
    if a.options.get("targets") not in ("all-linear",):
        causes.append("the adapter targets only some layers (targets: all-linear adapts every Linear)")
    big = {"adapter.r": r * 4} | ({"adapter.alpha": alpha * 4} if alpha is not None else {})
    fx = fixes(
        fix(view, CODE, "larger_rank", big),
        fix(view, CODE, "all_linear", {"adapter.targets": "all-linear"})
        if a.options.get("targets") not in ("all-linear",) else None,
        fix(view, CODE, "full_fine_tune"),
    )
    return make(view, CODE, "warning", view.epochs[-1].get("step") if view.epochs else None, ev, causes, fx)
