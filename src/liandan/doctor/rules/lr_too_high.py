"""lr_too_high: updates so large the loss bounces instead of descending.

Symptom: the median update/weight ratio |ΔW|/|W| over layers and probe steps exceeds 1e-2
(TheDeepChecker flags log10 ratio > -1 as "changing too quickly"; healthy runs here sit near
1e-3, the classic heuristic, Karpathy's cs231n notes). Second signal — the loss oscillates
instead of settling (AutoTrainer's "oscillating loss"): the validation loss ends ≥ 1.5× above
its minimum, or the training loss fell less than half, or the run learns poorly.
Notes: 学习率对模型训练的影响 — "太大会导致一步跳过山谷, 对面再跳回来, 震荡".
"""

from __future__ import annotations

from liandan.doctor.findings import Finding
from liandan.doctor.rules._common import fix, fixes, g, lower_lr, make, pct
from liandan.doctor.view import ADAPTIVE, RunView, finite, median, typical_lr
from liandan.registry import register_rule

CODE = "lr_too_high"
UPDATE = 1e-2


def update_ratio(view: RunView) -> float:
    """Median over probe steps (after the first) of the median layer update/weight ratio."""
    per_probe = []
    for p in view.probes[1:]:
        ups = [st["update"] for st in p.get("layers", {}).values() if "update" in st]
        if ups:
            per_probe.append(median(ups))
    return median(per_probe)


@register_rule(CODE, phase="epoch", suppresses=("underfitting", "overfitting"))
def lr_too_high(view: RunView) -> Finding | None:
    """Updates are > 1 % of the weights per step and the loss oscillates instead of settling."""
    upd = update_ratio(view)
    if not upd > UPDATE:
        return None
    val = finite(view.metric("val", "loss"))
    bounce = len(val) >= 2 and val[-1] > 1.5 * min(val)
    drop = view.loss_drop()
    slow = drop == drop and drop < 0.5
    if not (bounce or slow or view.learns_poorly()):
        return None
    step = next((p["step"] for p in view.probes[1:]
                 if median([st.get("update", 0) for st in p.get("layers", {}).values()], 0) > UPDATE),
                view.probes[-1]["step"] if view.probes else None)
    ev = {"update_ratio": upd, "lr": view.lr, "optimizer": view.optimizer, "loss_drop": drop,
          "val_loss_min": min(val) if val else None, "val_loss_final": val[-1] if val else None,
          "quality": view.quality()}
    typ = typical_lr(view.optimizer)
    causes = [f"learning rate {view.lr:g} moves the weights by {pct(upd)} per step (healthy ≈ 0.1 %): "
              "each step jumps across the valley and back, so the loss oscillates"]
    if bounce:
        causes.append(f"validation loss rose from its minimum {g(min(val))} to {g(val[-1])}")
    if view.lr > 3 * typ:
        causes.append(f"{view.lr:g} is above the usual {typ:g} for {view.optimizer}")
    if view.recipe.schedule.name == "constant":
        causes.append("a constant rate: no decay lets the weights settle at the end")
    if view.recipe.data.batch_size <= 16:
        causes.append(f"small batches ({view.recipe.data.batch_size}) add gradient noise to the large steps")
    fx = fixes(
        fix(view, CODE, "lower_lr", {"optim.lr": lower_lr(view)}),
        fix(view, CODE, "schedule", {"schedule.name": "cosine"}) if view.recipe.schedule.name == "constant" else None,
        fix(view, CODE, "warmup", {"schedule.warmup_steps": 100}) if not view.recipe.schedule.warmup_steps else None,
        fix(view, CODE, "clip", {"train.grad_clip": 1.0}) if not view.recipe.train.grad_clip else None,
        fix(view, CODE, "bigger_batch", {"data.batch_size": view.recipe.data.batch_size * 4}),
        fix(view, CODE, "adam", {"optim.name": "adamw", "optim.lr": 1e-3}) if view.optimizer not in ADAPTIVE
        else None,
        fix(view, CODE, "lr_find"),
    )
    return make(view, CODE, "warning", step, ev, causes, fx)
